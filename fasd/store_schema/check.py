"""Chunk-level integrity of a store (``fasd inspect --check``, ``fasd cache-teacher --repair``).

``cache-teacher`` trusts the ``done`` flags; this module does not: it decodes every chunk of every array of a
dataset and finds the done chunks whose data is unreadable (corrupt bytes) or missing (a deleted chunk file
reads as the fill value, NaN, on rows that are not recorded as unreadable frames), whose view parameters no
draw could give, and the chunks of the metadata arrays (label, split, ...) whose chunk object is gone (their
fill value would pass for data: a deleted label chunk reads as spoofs). ``repair`` clears the done flags of
exactly those chunks so the next cache run recomputes them (and rewrites the metadata from the frames);
``damaged_text`` checks the store's text arrays (centroids, captions), which any cache run restores.
"""

from __future__ import annotations

import numpy as np
import zarr

from fasd.store_schema import layout
from fasd.store_schema.store import TeacherStore, missing_row_chunks, read_strings
from fasd.store_schema.writer import chunk_count
from fasd.views import impossible_views

_METADATA = (layout.FRAME_ID, layout.LABEL, layout.SPLIT)
_NEVER_FILL = (layout.FRAME_ID, layout.SPLIT)  # values never equal to the fill value "": always stored


def missing_metadata(group: zarr.Group) -> dict[int, str]:
    """Chunks of the metadata arrays whose chunk object is gone (chunk -> why). Stores written before
    layout.METADATA_STORED_ATTR skipped all-fill chunks of label/video/attack type: only frame_id and split."""
    names = layout.META_ARRAYS if group.attrs.get(layout.METADATA_STORED_ATTR) else _NEVER_FILL
    chunks = range(chunk_count(int(group.attrs[layout.ROWS_ATTR]), int(group.attrs[layout.CHUNK_ROWS_ATTR])))
    missing: dict[int, str] = {}
    for name in names:
        for chunk in missing_row_chunks(group[name], chunks) if name in group else []:
            missing.setdefault(chunk, f"its '{name}' chunk is missing (deleted)")
    return missing


def damaged_text(store: TeacherStore) -> dict[str, str]:
    """The store's text arrays (text/centroids, text/captions, ...) that are missing a chunk, cannot be decoded
    or hold non-finite values (name -> why)."""
    if layout.TEXT_GROUP not in store.root:
        return {}
    damaged = {}
    for name, array in store.root[layout.TEXT_GROUP].arrays():
        where = f"{layout.TEXT_GROUP}/{name}"
        values = _readable(array, 0, array.shape[0])
        if missing_row_chunks(array, range(array.cdata_shape[0])):
            damaged[where] = "a chunk is missing (deleted)"
        elif values is None:
            damaged[where] = "cannot be decoded"
        elif values.dtype.kind == "f" and not np.isfinite(values).all():
            damaged[where] = "holds non-finite values"
    return damaged


def _readable(array: zarr.Array, start: int, end: int) -> np.ndarray | None:
    try:
        return array[start:end]
    except Exception:  # zarr/numcodecs raise many types for corrupt chunk bytes
        return None


def damaged_chunks(store: TeacherStore, name: str) -> dict[int, str]:
    """Done chunks of dataset ``name`` that cannot be trusted, with the reason (chunk -> why)."""
    group = store.dataset(name)
    rows, chunk_rows = int(group.attrs[layout.ROWS_ATTR]), int(group.attrs[layout.CHUNK_ROWS_ATTR])
    unreadable = set(group.attrs.get(layout.UNREADABLE_ATTR, []))
    done = _readable(group[layout.DONE], 0, chunk_count(rows, chunk_rows))
    if done is None:
        return {c: "its done flags are unreadable" for c in range(chunk_count(rows, chunk_rows))}
    damaged: dict[int, str] = missing_metadata(group)
    for chunk in np.flatnonzero(done):
        if int(chunk) in damaged:
            continue
        start, end = int(chunk) * chunk_rows, min((int(chunk) + 1) * chunk_rows, rows)
        arrays = store.arrays  # the targets, and with views their per-view arrays and the view parameters
        for array_name in (*_METADATA, *arrays):
            if array_name not in group:
                damaged[int(chunk)] = f"array '{array_name}' is missing"
                break
            values = _readable(group[array_name], start, end)
            if values is None:
                damaged[int(chunk)] = f"'{array_name}' cannot be decoded"
                break
            if array_name in arrays:
                bad = ~np.isfinite(values.reshape(end - start, -1)).all(axis=1)
                if array_name == layout.VIEW_PARAMS and (impossible_views(values).any(axis=1) & ~bad).any():
                    damaged[int(chunk)] = f"'{array_name}' holds view parameters no draw could give"
                    break
                ids = read_strings(group[layout.FRAME_ID])[start:end][bad] if bad.any() else []
                if any(str(i) not in unreadable for i in ids):
                    damaged[int(chunk)] = f"'{array_name}' has missing values"
                    break
    return damaged


def repair(store: TeacherStore, name: str) -> dict[int, str]:
    """Clear the done flags of the damaged chunks (the cache job then recomputes exactly those); returns them."""
    damaged = damaged_chunks(store, name)
    group = store.dataset(name)
    for chunk in damaged:
        group[layout.DONE][chunk] = False
    if damaged:
        group.update_attributes({layout.COMPLETED_ATTR: False})
    return damaged


def describe(name: str, damaged: dict[int, str]) -> str:
    if not damaged:
        return f"[{name}] every chunk reads back intact"
    shown = "; ".join(f"chunk {c}: {why}" for c, why in sorted(damaged.items())[:5])
    more = f" (+{len(damaged) - 5} more)" if len(damaged) > 5 else ""
    return f"[{name}] {len(damaged)} damaged chunk(s): {shown}{more}"
