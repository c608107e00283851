"""Attach cached teacher targets to the student's streams, checking the store first; look them up per batch.

Every frame the trainer will use must be in the store, and each dataset's source fingerprint must
still match; otherwise one line says what is missing and which command caches it.

Targets are held one of two ways (``fasd train --targets-in-memory``, the default, or ``--stream-targets``):
in memory, every used frame's fp16 feature is loaded once (~1 KB a frame); streamed, only the frame-ID
lookup and the logits are loaded and the features are read chunk by chunk through a small cache
(fasd.store_schema.streaming), while the trainer orders its draws in windows of chunks
(sampler.BlockWindowSampler) so each chunk is decompressed about once per epoch rather than once per frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fasd.errors import FasdError
from fasd.store_schema import layout
from fasd.store_schema.reader import load_targets, non_finite_features, source_mismatch
from fasd.store_schema.store import open_store
from fasd.store_schema.streaming import BlockCache, ChunkedFeatures
from fasd.student_train.data import StudentFrames

# Store chunks per window of the streamed draw order. The cache holds two windows (a batch may straddle
# two): 2 x 16 x 4 MB at the default 4096-row chunks of 512-d features.
STREAM_WINDOW = 16


@dataclass
class ArrayTargets:
    """One domain's targets in memory, aligned with its rows."""

    feature: np.ndarray  # (rows, D) float16
    logits: np.ndarray  # (rows, 2) float32

    @property
    def blocks(self) -> None:
        return None  # no chunk order to respect

    def take(self, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.feature[offsets], self.logits[offsets]


@dataclass
class StreamedTargets:
    """One domain's targets: logits in memory, features read from the store chunk by chunk."""

    features: ChunkedFeatures
    store_rows: np.ndarray  # store row of each of the domain's rows
    logits: np.ndarray  # (rows, 2) float32
    where: tuple[str, str]  # (store path, dataset) for error messages

    @property
    def blocks(self) -> np.ndarray:
        """The store chunk of each of the domain's rows."""
        return self.store_rows // self.features.chunk_rows

    def take(self, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        feature = self.features.take(self.store_rows[offsets])
        if not np.isfinite(feature).all():
            raise non_finite_features(*self.where)
        return feature, self.logits[offsets]


class FrameTargets:
    """The teacher targets of a stream's items (its domains concatenated), fetched a batch at a time."""

    def __init__(self, frames: StudentFrames, domains: list[ArrayTargets | StreamedTargets], dim: int):
        self.domain_of, self.offset, self.domains, self.dim = frames.domain_of, frames.offset, domains, dim

    def __call__(self, items: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features (n, D), logits (n, 2)) as float32 tensors for item indices ``items``."""
        items = np.asarray(items, dtype=np.int64)
        domain, offset = self.domain_of[items], self.offset[items]
        feature = np.empty((len(items), self.dim), dtype=np.float32)
        logits = np.empty((len(items), 2), dtype=np.float32)
        for d in np.unique(domain):
            mask = domain == d
            feature[mask], logits[mask] = self.domains[d].take(offset[mask])
        return torch.from_numpy(feature), torch.from_numpy(logits)

    @property
    def block_of(self) -> np.ndarray | None:
        """A block ID (domain, store chunk) per item when features are streamed; None in memory."""
        blocks = [d.blocks for d in self.domains]
        if any(b is None for b in blocks):
            return None
        shift = np.cumsum([0] + [int(b.max()) + 1 if len(b) else 0 for b in blocks[:-1]])
        out = np.empty(len(self.domain_of), dtype=np.int64)
        for d, b in enumerate(blocks):
            mask = self.domain_of == d
            out[mask] = b[self.offset[mask]] + shift[d]
        return out


def attach_targets(store_path: str, streams: list[StudentFrames], stream: bool = False,
                   window: int = STREAM_WINDOW) -> tuple[dict, list[FrameTargets]]:
    """Check the store holds every frame of ``streams`` (e.g. [train, val]) and build their target lookups.

    ``stream`` reads features chunk by chunk through one cache of two ``window``s of chunks instead of
    loading them (``window``: the BlockWindowSampler's).
    Returns the store's teacher fingerprint (recorded in the run's config) and one FrameTargets per stream.
    """
    store = open_store(store_path)
    cache = BlockCache(2 * window)
    loaded = {}
    lookups = []
    for frames in streams:
        per_domain = []
        for part in frames.domains:
            name = part.source.name
            if name not in loaded:
                store.dataset(name)
                why = source_mismatch(store, name, part.source.fingerprint())
                if why:
                    raise FasdError(f"the store's copy of '{name}' is stale: {why}; re-cache it with "
                                    f"`fasd cache-teacher --dataset {name} --store {store_path} --overwrite`")
                loaded[name] = load_targets(store, name, features=not stream)
            targets = loaded[name]
            frame_ids = part.source.table.frame_id[part.rows]
            store_rows = targets.rows_for(frame_ids)
            missing = frame_ids[store_rows < 0]
            if len(missing):
                raise FasdError(
                    f"{len(missing)} of {len(frame_ids)} frames of '{name}' needed for training are missing from "
                    f"{store_path} (e.g. {', '.join(map(str, missing[:3]))}); cache them with "
                    f"`fasd cache-teacher --dataset {name} --store {store_path}`")
            if stream:
                features = ChunkedFeatures(store.dataset(name)[layout.FEATURE], cache)
                per_domain.append(StreamedTargets(features, store_rows, targets.logits[store_rows],
                                                  (store_path, name)))
            else:
                per_domain.append(ArrayTargets(targets.feature[store_rows], targets.logits[store_rows]))
        lookups.append(FrameTargets(frames, per_domain, store.centroids.shape[1]))
    return store.teacher, lookups
