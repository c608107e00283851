"""Read cached teacher targets and look frames up by ID (the student side's view of the store)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fasd.errors import FasdError
from fasd.store_schema import layout
from fasd.store_schema.store import TeacherStore, read_strings
from fasd.store_schema.writer import done_rows


@dataclass
class DatasetTargets:
    """One dataset's cached targets held in memory (fp16 features: ~1 KB a frame)."""

    name: str
    frame_id: np.ndarray
    feature: np.ndarray | None  # (N, D) float16, unit norm; None when features are streamed (ChunkedFeatures)
    logits: np.ndarray  # (N, 2) float32 [spoof, live]
    _row_of: dict[str, int]

    def rows_for(self, frame_ids: np.ndarray) -> np.ndarray:
        """Store rows of ``frame_ids`` (-1 for frames not in the store or without valid targets)."""
        return np.fromiter((self._row_of.get(str(f), -1) for f in frame_ids), dtype=np.int64,
                           count=len(frame_ids))


def source_mismatch(store: TeacherStore, name: str, fingerprint: dict) -> str | None:
    """Why the store's copy of dataset ``name`` no longer matches its frame source, or None."""
    stored = dict(store.dataset(name).attrs.get(layout.SOURCE_ATTR, {}))
    changed = sorted(k for k in fingerprint if k != "splits" and stored.get(k) != fingerprint[k])
    return f"its source changed ({', '.join(changed)})" if changed else None


def non_finite_features(path: str, name: str) -> FasdError:
    return FasdError(f"{path}/{name} holds non-finite features in completed chunks; re-cache it")


def load_targets(store: TeacherStore, name: str, features: bool = True) -> DatasetTargets:
    """Load one dataset's targets into memory; frames whose chunk is not done or whose targets are NaN
    (unreadable frames) are left out of the lookup so they count as missing.

    ``features=False`` loads only the lookup and the logits (8 bytes a frame) for a trainer that streams the
    features (1 KB a frame) chunk by chunk instead.
    """
    group = store.dataset(name)
    frame_id = read_strings(group[layout.FRAME_ID])
    feature = group[layout.FEATURE][:] if features else None
    logits = group[layout.LOGITS][:]
    valid = done_rows(group) & np.isfinite(logits).all(axis=1)
    if feature is not None and len(frame_id) and not np.isfinite(feature[valid]).all():
        raise non_finite_features(store.path, name)
    row_of = {str(f): i for i, f in enumerate(frame_id) if valid[i]}
    return DatasetTargets(name, frame_id, feature, logits, row_of)
