"""Read cached teacher targets and look frames up by ID (the student side's view of the store)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fasd.errors import FasdError
from fasd.store_schema import layout
from fasd.store_schema.store import TeacherStore, read_strings
from fasd.store_schema.writer import same_source, valid_rows
from fasd.views import impossible_views


@dataclass
class DatasetTargets:
    """One dataset's cached targets held in memory: the arrays asked for, by target name."""

    name: str
    frame_id: np.ndarray
    arrays: dict[str, np.ndarray]  # (N, *shape) per loaded target; with views (N, K, *shape)
    _row_of: dict[str, int]
    view_params: np.ndarray | None = None  # (N, K, P) when loaded with views
    view_mix: np.ndarray | None = None  # (N, K, MIX) when loaded with views of a store cached with --mix

    def rows_for(self, frame_ids: np.ndarray) -> np.ndarray:
        """Store rows of ``frame_ids`` (-1 for frames not in the store or without valid targets)."""
        return np.fromiter((self._row_of.get(str(f), -1) for f in frame_ids), dtype=np.int64,
                           count=len(frame_ids))


def source_mismatch(store: TeacherStore, name: str, fingerprint: dict) -> str | None:
    """Why the store's copy of dataset ``name`` no longer matches its frame source, or None."""
    stored = dict(store.dataset(name).attrs.get(layout.SOURCE_ATTR, {}))
    stored.pop("splits", None)
    if same_source(stored, fingerprint):
        return None
    changed = sorted(k for k in fingerprint if stored.get(k) != fingerprint[k])
    return f"its source changed ({', '.join(changed)})"


def damaged_store(path: str, name: str, what: str) -> FasdError:
    return FasdError(f"{path}/{name} is damaged ({what}); find the chunks with `fasd inspect {path} --check` and "
                     f"recompute them with `fasd cache-teacher --dataset {name} --store {path} --repair ...`")


def non_finite_targets(path: str, name: str, target: str) -> FasdError:
    return damaged_store(path, name, f"non-finite '{target}' targets in completed chunks")


def no_views(path: str) -> FasdError:
    return FasdError(f"{path} was cached without views: re-cache it with `fasd cache-teacher --views K ...` "
                     f"or train without --views")


def unreadable_ids(store: TeacherStore, name: str) -> frozenset[str]:
    """Frame IDs of dataset ``name`` that the cache job could not decode (stored as NaN targets)."""
    return frozenset(str(f) for f in store.dataset(name).attrs.get(layout.UNREADABLE_ATTR, []))


def load_targets(store: TeacherStore, name: str, targets: tuple[str, ...], views: bool = False) -> DatasetTargets:
    """Load one dataset's ``targets`` into memory; frames whose chunk is not done or whose targets are NaN
    (unreadable frames, ``unreadable_ids``: the trainer leaves those out of its streams first) are left out of the
    lookup so they count as missing.

    ``views``: load every target's per-view array (N, K, *shape) instead, and the view parameters.
    A trainer that streams some targets chunk by chunk loads only the lookup and the small ones here.
    """
    group = store.dataset(name)
    missing = [t for t in targets if t not in store.targets]
    if missing:
        raise FasdError(f"{store.path} has no '{missing[0]}' targets (it holds: {', '.join(store.targets)}); "
                        f"cache a teacher that provides them")
    if views and store.views is None:
        raise no_views(store.path)
    try:
        frame_id = read_strings(group[layout.FRAME_ID])
        valid = valid_rows(group)
        arrays = {target: group[layout.view_array(target) if views else target][:] for target in targets}
        params = group[layout.VIEW_PARAMS][:] if views else None
        mix = group[layout.VIEW_MIX][:] if views and layout.VIEW_MIX in store.arrays else None
    except Exception as exc:  # zarr/numcodecs raise many types for corrupt or missing chunk data
        raise damaged_store(store.path, name, f"{type(exc).__name__}: {str(exc)[:80]}") from None
    for target, values in {**arrays, **({layout.VIEW_PARAMS: params} if views else {})}.items():
        if len(frame_id) and not np.isfinite(values[valid]).all():
            raise non_finite_targets(store.path, name, target)
    if views and len(frame_id) and impossible_views(params[valid]).any():
        raise damaged_store(store.path, name, f"'{layout.VIEW_PARAMS}' holds view parameters no draw could give")
    row_of = {str(f): i for i, f in enumerate(frame_id) if valid[i]}
    return DatasetTargets(name, frame_id, arrays, row_of, params, mix)
