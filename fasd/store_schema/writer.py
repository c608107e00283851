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
from fasd.store_schema.specs import TargetSpec
from fasd.store_schema.store import TeacherStore, missing_row_chunks, require_array


def chunk_count(rows: int, chunk_rows: int) -> int:
    return (rows + chunk_rows - 1) // chunk_rows


def same_source(stored: dict, fingerprint: dict) -> bool:
    """Whether a stored source fingerprint describes these frames. A fasd 0.1 fingerprint also held the
    pack's absolute path, which is not compared: a store moved to another machine or mount point still fits."""
    return {k: v for k, v in stored.items() if k != "path"} == fingerprint


def prepare_dataset(store: TeacherStore, name: str, source_fingerprint: dict, source_path: str,
                    columns: dict[str, np.ndarray], chunk_rows: int, overwrite: bool) -> zarr.Group:
    """Return the dataset's group, creating it when new; refuse a group cached from other frames.

    ``columns``: the per-frame metadata arrays of layout.META_ARRAYS, one entry per store row.
    """
    root = store.root
    if name in store.dataset_names():
        group = root[name]
        stored = dict(group.attrs.get(layout.SOURCE_ATTR, {}))
        same_rows = group.attrs.get(layout.CHUNK_ROWS_ATTR) == chunk_rows
        if same_source(stored, source_fingerprint) and same_rows:
            if not group.attrs.get(layout.COMPLETED_ATTR):  # e.g. after --repair: a deleted metadata chunk
                _restore_metadata(group, columns)
            return group
        if not overwrite:
            what = "its frames or splits changed" if not same_source(stored, source_fingerprint) else (
                f"it was cached with --chunk-rows {group.attrs.get(layout.CHUNK_ROWS_ATTR)}")
            raise FasdError(f"dataset '{name}' in {store.path} does not match this run ({what}); "
                            f"pass --overwrite to re-cache it")
        del root[name]
    attrs = {layout.SOURCE_ATTR: source_fingerprint, layout.SOURCE_PATH_ATTR: source_path}
    try:
        return _create_dataset(root, name, attrs, columns, store.arrays, chunk_rows)
    except FasdError:
        if not overwrite or name not in root:
            raise
        del root[name]  # an unfinished group of another layout (e.g. other --chunk-rows) that --overwrite replaces
        return _create_dataset(root, name, attrs, columns, store.arrays, chunk_rows)


def frame_columns(frame_id: np.ndarray, label: np.ndarray, split: np.ndarray, video_id: np.ndarray,
                  attack_type: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The per-frame metadata arrays a dataset group stores (attack types '' when unknown)."""
    return {layout.FRAME_ID: frame_id, layout.LABEL: label, layout.SPLIT: split, layout.VIDEO_ID: video_id,
            layout.ATTACK_TYPE: np.full(len(frame_id), "") if attack_type is None else attack_type}


_COLUMN_DTYPES = {layout.FRAME_ID: str, layout.LABEL: "i1", layout.SPLIT: str, layout.VIDEO_ID: str,
                  layout.ATTACK_TYPE: str}


def _create_dataset(root: zarr.Group, name: str, attrs: dict, columns: dict[str, np.ndarray],
                    targets: dict[str, TargetSpec], chunk_rows: int) -> zarr.Group:
    """Create whatever of the group is missing, write its frame metadata, then its attributes (last)."""
    rows = len(columns[layout.FRAME_ID])
    try:
        group = root.require_group(name)
    except zarr.errors.ContainsGroupError:  # created by another shard between zarr's check and write
        group = root[name]
    for array_name, dtype in _COLUMN_DTYPES.items():
        array = require_array(group, array_name, (rows,), dtype, (chunk_rows,))
        if rows:  # every chunk stored, even all-fill ones, so that a deleted chunk shows (METADATA_STORED_ATTR)
            array.with_config({"write_empty_chunks": True})[:] = np.asarray(columns[array_name]).astype(dtype)
    for target, spec in targets.items():
        require_array(group, target, (rows, *spec.shape), spec.dtype, (chunk_rows, *spec.shape), fill_value=np.nan)
    require_array(group, layout.DONE, (chunk_count(rows, chunk_rows),), bool, (1,), fill_value=False)
    # One metadata write (attrs.update would write once per key, showing other shards half the attributes).
    group.update_attributes({**attrs, layout.ROWS_ATTR: rows, layout.CHUNK_ROWS_ATTR: chunk_rows,
                             layout.COMPLETED_ATTR: rows == 0, layout.UNREADABLE_ATTR: [],
                             layout.METADATA_STORED_ATTR: True})
    return group


def _restore_metadata(group: zarr.Group, columns: dict[str, np.ndarray]) -> None:
    """Rewrite each metadata array of which a chunk is missing (the same frames give the same values)."""
    chunks = range(group[layout.DONE].shape[0])
    for name, dtype in _COLUMN_DTYPES.items():
        if name in group and missing_row_chunks(group[name], chunks):
            group[name].with_config({"write_empty_chunks": True})[:] = np.asarray(columns[name]).astype(dtype)


def pending_chunks(group: zarr.Group, shard: int = 0, num_shards: int = 1) -> list[int]:
    """Chunks not yet done that belong to this shard (chunk c goes to shard c mod N)."""
    done = group[layout.DONE][:]
    return [c for c in range(len(done)) if c % num_shards == shard and not done[c]]


def write_chunk(group: zarr.Group, chunk: int, targets: dict[str, np.ndarray]) -> None:
    """Write one whole chunk of every target (converted to its stored dtype), then mark it done."""
    start = chunk * group.attrs[layout.CHUNK_ROWS_ATTR]
    for name, values in targets.items():
        array = group[name]
        array[start:start + len(values)] = values.astype(array.dtype)
    group[layout.DONE][chunk] = True


def done_rows(group: zarr.Group, done: np.ndarray | None = None) -> np.ndarray:
    """Per-row mask of rows whose chunk is done (``done``: the chunk flags, when already read)."""
    done = group[layout.DONE][:] if done is None else done
    return np.repeat(done, int(group.attrs[layout.CHUNK_ROWS_ATTR]))[: int(group.attrs[layout.ROWS_ATTR])]


def valid_rows(group: zarr.Group, done: np.ndarray | None = None) -> np.ndarray:
    """Rows whose chunk is done and whose logits are finite (NaN logits mark an unreadable frame)."""
    return done_rows(group, done) & np.isfinite(group[layout.LOGITS][:]).all(axis=1)


def unreadable_frames(group: zarr.Group, done: np.ndarray) -> list[str]:
    """Frame IDs of rows in done chunks whose targets are NaN (frames that could not be decoded)."""
    bad = np.flatnonzero(done_rows(group, done) & ~valid_rows(group, done))
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
