"""Names, versions and shape contract of the teacher store (see DESIGN.md, "The teacher store").

Schema 2 stores any named targets, each described by a TargetSpec in the teacher fingerprint's ``targets``;
schema 1 (fasd 0.1) stores exactly ``feature`` (N, D) f2 and ``logits`` (N, 2) f4 and still reads.
"""

from __future__ import annotations

SCHEMA_VERSION = 2  # what this fasd writes
READABLE_VERSIONS = (1, 2)
SCHEMA_ATTR = "fasd_store"
TEACHER_ATTR = "teacher"
TEXT_GROUP = "text"
CENTROIDS = "text/centroids"

# Per-dataset group arrays.
FRAME_ID = "frame_id"
LABEL = "label"
SPLIT = "split"
VIDEO_ID = "video_id"
ATTACK_TYPE = "attack_type"  # schema 2
FEATURE = "feature"
LOGITS = "logits"
DONE = "done"
# With `cache-teacher --views K`: the view parameters (N, K, P) (fasd.views.PARAM_COLUMNS) and every target
# as views/<target> (N, K, *shape); the teacher fingerprint's VIEWS_KEY holds K, the seed and the jitter switch.
VIEWS_GROUP = "views"
VIEW_PARAMS = "views/params"
VIEWS_KEY = "views"
# With `--mix` too: views/mix (N, K, MIX) float64, each view's partner store row, λ and CutMix box
# (fasd.mixing.MIX_COLUMNS); the partner is another row of the same chunk and split.
VIEW_MIX = "views/mix"
META_ARRAYS = (FRAME_ID, LABEL, SPLIT, VIDEO_ID, ATTACK_TYPE)

# Per-dataset group attrs.
SOURCE_ATTR = "source"  # the frame source's fingerprint + cached splits
SOURCE_PATH_ATTR = "source_path"  # informational only: where the frames were read from
CHUNK_ROWS_ATTR = "chunk_rows"
ROWS_ATTR = "rows"
COMPLETED_ATTR = "completed"
UNREADABLE_ATTR = "unreadable"  # frame IDs that could not be decoded (NaN targets)
# True when every chunk of every metadata array was written, even one equal to the fill value (a label chunk of
# spoofs only): then a missing chunk object is a deleted one (fasd inspect --check). Stores without it: frame_id
# and split only (their values are never the fill value).
METADATA_STORED_ATTR = "metadata_chunks_stored"

FEATURE_DTYPE = "f2"
LOGITS_DTYPE = "f4"


def view_array(target: str) -> str:
    """The per-view array of ``target`` (N, K, *shape)."""
    return f"{VIEWS_GROUP}/{target}"
