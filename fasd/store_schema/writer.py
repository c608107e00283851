"""Create a dataset's group in the store and write its targets chunk by chunk.

``done[c]`` is set only after chunk ``c`` is fully written, so a killed job resumes exactly where
it stopped. ``done`` has one element per Zarr chunk so concurrent shards never rewrite each other's flags.
"""

from __future__ import annotations

import numpy as np
import zarr

from fasd.errors import FasdError
from fasd.store_schema import layout
from fasd.store_schema.store import TeacherStore


def chunk_count(rows: int, chunk_rows: int) -> int:
    return (rows + chunk_rows - 1) // chunk_rows


def prepare_dataset(store: TeacherStore, name: str, source_fingerprint: dict, frame_id: np.ndarray,
                    label: np.ndarray, split: np.ndarray, video_id: np.ndarray, chunk_rows: int,
                    overwrite: bool) -> zarr.Group:
    """Return the dataset's group, creating it when new; refuse a group cached from other frames."""
    root = store.root
    dim = store.centroids.shape[1]
    if name in store.dataset_names():
        group = root[name]
        stored = dict(group.attrs.get(layout.SOURCE_ATTR, {}))
        same_rows = group.attrs.get(layout.CHUNK_ROWS_ATTR) == chunk_rows
        if stored == source_fingerprint and same_rows:
            return group
        if not overwrite:
            what = "its frames or splits changed" if stored != source_fingerprint else (
                f"it was cached with --chunk-rows {group.attrs.get(layout.CHUNK_ROWS_ATTR)}")
            raise FasdError(f"dataset '{name}' in {store.path} does not match this run ({what}); "
                            f"pass --overwrite to re-cache it")
        del root[name]
    rows = len(frame_id)
    group = root.create_group(name)
    chunks = (chunk_rows,)
    for array_name, values, dtype in ((layout.FRAME_ID, frame_id, str), (layout.LABEL, label, "i1"),
                                      (layout.SPLIT, split, str), (layout.VIDEO_ID, video_id, str)):
        array = group.create_array(array_name, shape=(rows,), dtype=dtype, chunks=chunks)
        if rows:
            array[:] = np.asarray(values).astype(dtype)
    group.create_array(layout.FEATURE, shape=(rows, dim), dtype=layout.FEATURE_DTYPE,
                       chunks=(chunk_rows, dim), fill_value=np.nan)
    group.create_array(layout.LOGITS, shape=(rows, 2), dtype=layout.LOGITS_DTYPE,
                       chunks=(chunk_rows, 2), fill_value=np.nan)
    group.create_array(layout.DONE, shape=(chunk_count(rows, chunk_rows),), dtype=bool, chunks=(1,),
                       fill_value=False)
    group.attrs.update({layout.SOURCE_ATTR: source_fingerprint, layout.ROWS_ATTR: rows,
                        layout.CHUNK_ROWS_ATTR: chunk_rows, layout.COMPLETED_ATTR: rows == 0,
                        layout.UNREADABLE_ATTR: []})
    return group


def pending_chunks(group: zarr.Group, shard: int = 0, num_shards: int = 1) -> list[int]:
    """Chunks not yet done that belong to this shard (chunk c goes to shard c mod N)."""
    done = group[layout.DONE][:]
    return [c for c in range(len(done)) if c % num_shards == shard and not done[c]]


def write_chunk(group: zarr.Group, chunk: int, feature: np.ndarray, logits: np.ndarray) -> None:
    """Write one whole chunk's targets, then mark it done."""
    chunk_rows = group.attrs[layout.CHUNK_ROWS_ATTR]
    start = chunk * chunk_rows
    end = start + len(feature)
    group[layout.FEATURE][start:end] = feature.astype(np.float16)
    group[layout.LOGITS][start:end] = logits.astype(np.float32)
    group[layout.DONE][chunk] = True


def finalize(group: zarr.Group, unreadable_ids: list[str]) -> bool:
    """Record unreadable frames and whether every chunk is done; returns completion."""
    known = list(group.attrs.get(layout.UNREADABLE_ATTR, []))
    merged = sorted(set(known) | set(unreadable_ids))
    completed = bool(group[layout.DONE][:].all())
    group.attrs.update({layout.UNREADABLE_ATTR: merged, layout.COMPLETED_ATTR: completed})
    return completed
