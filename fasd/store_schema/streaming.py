"""Teacher targets read chunk by chunk, for stores larger than memory (``fasd train --stream-targets``).

A Zarr chunk is the unit of compression: reading one frame's feature decompresses its whole chunk
(chunk_rows x D fp16, 4 MB at the default 4096 rows). Frames read in random order would decompress one
chunk per frame. The trainer instead orders its draws so that frames of the same chunk come together
(fasd.training.sampler.BlockWindowSampler), and this reader keeps the last few decompressed chunks,
so each chunk is decompressed about once per epoch.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import zarr


class BlockCache:
    """The most recently used decompressed chunks of any number of arrays, at most ``capacity`` of them."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.reads = 0  # chunks decompressed so far (the cost streaming keeps low)
        self._blocks: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()

    def block(self, array: zarr.Array, chunk: int) -> np.ndarray:
        key = (array.path, chunk)
        if key in self._blocks:
            self._blocks.move_to_end(key)
            return self._blocks[key]
        rows = array.chunks[0]
        values = array[chunk * rows:(chunk + 1) * rows]
        self.reads += 1
        self._blocks[key] = values
        if len(self._blocks) > self.capacity:
            self._blocks.popitem(last=False)
        return values


class ChunkedTargets:
    """One dataset's target array (N, *shape), read through a shared BlockCache."""

    def __init__(self, array: zarr.Array, cache: BlockCache):
        self.array, self.cache = array, cache
        self.chunk_rows = int(array.chunks[0])

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Targets of store ``rows`` (any order), decompressing each chunk they touch at most once."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), *self.array.shape[1:]), dtype=self.array.dtype)
        chunks = rows // self.chunk_rows
        for chunk in np.unique(chunks):
            mask = chunks == chunk
            out[mask] = self.cache.block(self.array, int(chunk))[rows[mask] - chunk * self.chunk_rows]
        return out
