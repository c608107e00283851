"""Names, version and shape contract of the teacher store (see DESIGN.md, "The teacher store")."""

from __future__ import annotations

SCHEMA_VERSION = 1
SCHEMA_ATTR = "fasd_store"
TEACHER_ATTR = "teacher"
CENTROIDS = "text/centroids"

# Per-dataset group arrays.
FRAME_ID = "frame_id"
LABEL = "label"
SPLIT = "split"
VIDEO_ID = "video_id"
FEATURE = "feature"
LOGITS = "logits"
DONE = "done"
META_ARRAYS = (FRAME_ID, LABEL, SPLIT, VIDEO_ID)
TARGET_ARRAYS = (FEATURE, LOGITS)

# Per-dataset group attrs.
SOURCE_ATTR = "source"  # the frame source's fingerprint + cached splits
CHUNK_ROWS_ATTR = "chunk_rows"
ROWS_ATTR = "rows"
COMPLETED_ATTR = "completed"
UNREADABLE_ATTR = "unreadable"  # frame IDs that could not be decoded (NaN targets)

FEATURE_DTYPE = "f2"
LOGITS_DTYPE = "f4"
