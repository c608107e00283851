"""Chunk-level integrity of a store (``fasd inspect --check``, ``fasd cache-teacher --repair``).

``cache-teacher`` trusts the ``done`` flags; this module does not: it decodes every chunk of every array of a
dataset and finds the done chunks whose data is unreadable (corrupt bytes) or missing (a deleted chunk file
reads as the fill value, NaN, on rows that are not recorded as unreadable frames). ``repair`` clears the done
flags of exactly those chunks so the next cache run recomputes them.
"""

from __future__ import annotations

import numpy as np
import zarr

from fasd.store_schema import layout
from fasd.store_schema.store import TeacherStore, read_strings
from fasd.store_schema.writer import chunk_count

_METADATA = (layout.FRAME_ID, layout.LABEL, layout.SPLIT)


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
    damaged: dict[int, str] = {}
    for chunk in np.flatnonzero(done):
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
