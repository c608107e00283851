"""Create a dataset's group in the store and write its targets chunk by chunk.

``done[c]`` is set only after chunk ``c`` is fully written, so a killed job resumes exactly where
it stopped. ``done`` has one element per Zarr chunk so concurrent shards never rewrite each other's flags.

Shards started together may all prepare the same group: a group without its attributes is being created
(or its creation was interrupted) and is completed with identical content, never recreated; the
attributes, written last, mark it finished. Only ``overwrite`` deletes a group.
"""

from __future__ import annotations

import numpy as np
import zarr

from fasd.errors import FasdError
from fasd.store_schema import layout
from fasd.store_schema.store import TeacherStore, require_array


def chunk_count(rows: int, chunk_rows: int) -> int:
    return (rows + chunk_rows - 1) // chunk_rows


def prepare_dataset(store: TeacherStore, name: str, source_fingerprint: dict, frame_id: np.ndarray,
                    label: np.ndarray, split: np.ndarray, video_id: np.ndarray, chunk_rows: int,
                    overwrite: bool) -> zarr.Group:
    """Return the dataset's group, creating it when new; refuse a group cached from other frames."""
    root = store.root
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
    columns = {layout.FRAME_ID: (frame_id, str), layout.LABEL: (label, "i1"), layout.SPLIT: (split, str),
               layout.VIDEO_ID: (video_id, str)}
    try:
        return _create_dataset(root, name, source_fingerprint, columns, store.centroids.shape[1], chunk_rows)
    except FasdError:
        if not overwrite or name not in root:
            raise
        del root[name]  # an unfinished group of another layout (e.g. other --chunk-rows) that --overwrite replaces
        return _create_dataset(root, name, source_fingerprint, columns, store.centroids.shape[1], chunk_rows)


def _create_dataset(root: zarr.Group, name: str, source_fingerprint: dict, columns: dict, dim: int,
                    chunk_rows: int) -> zarr.Group:
    """Create whatever of the group is missing, write its frame metadata, then its attributes (last)."""
    rows = len(columns[layout.FRAME_ID][0])
    try:
        group = root.require_group(name)
    except zarr.errors.ContainsGroupError:  # created by another shard between zarr's check and write
        group = root[name]
    for array_name, (values, dtype) in columns.items():
        array = require_array(group, array_name, (rows,), dtype, (chunk_rows,))
        if rows:
            array[:] = np.asarray(values).astype(dtype)
    require_array(group, layout.FEATURE, (rows, dim), layout.FEATURE_DTYPE, (chunk_rows, dim), fill_value=np.nan)
    require_array(group, layout.LOGITS, (rows, 2), layout.LOGITS_DTYPE, (chunk_rows, 2), fill_value=np.nan)
    require_array(group, layout.DONE, (chunk_count(rows, chunk_rows),), bool, (1,), fill_value=False)
    # One metadata write (attrs.update would write once per key, showing other shards half the attributes).
    group.update_attributes({layout.SOURCE_ATTR: source_fingerprint, layout.ROWS_ATTR: rows,
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


def done_rows(group: zarr.Group, done: np.ndarray | None = None) -> np.ndarray:
    """Per-row mask of rows whose chunk is done (``done``: the chunk flags, when already read)."""
    done = group[layout.DONE][:] if done is None else done
    return np.repeat(done, int(group.attrs[layout.CHUNK_ROWS_ATTR]))[: int(group.attrs[layout.ROWS_ATTR])]


def unreadable_frames(group: zarr.Group, done: np.ndarray) -> list[str]:
    """Frame IDs of rows in done chunks whose targets are NaN (frames that could not be decoded)."""
    bad = np.flatnonzero(done_rows(group, done) & ~np.isfinite(group[layout.LOGITS][:]).all(axis=1))
    return sorted(str(f) for f in group[layout.FRAME_ID].get_orthogonal_selection((bad,))) if len(bad) else []


def finalize(group: zarr.Group) -> bool:
    """Record whether every chunk is done and which frames are unreadable; returns completion.

    Both are read back from the store rather than taken from this process's work, and ``done`` is re-read
    after writing them: a shard that finished meanwhile makes this one write again, so when shards finish
    at the same time the last write still describes the whole store.
    """
    while True:
        done = group[layout.DONE][:]
        group.update_attributes({layout.UNREADABLE_ATTR: unreadable_frames(group, done),
                                 layout.COMPLETED_ATTR: bool(done.all())})
        if np.array_equal(group[layout.DONE][:], done):
            return bool(done.all())
