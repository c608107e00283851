"""Attach cached teacher targets to the student's streams, checking the store first; look them up per batch.

Every frame the trainer will use must be in the store, and each dataset's source fingerprint must
still match; otherwise one line says what is missing and which command caches it. Frames the cache job could
not decode have no targets: ``readable_parts`` leaves them out of the streams first, with a warning naming them.
Only the targets the active loss terms read are loaded.

Targets are held one of two ways (``fasd train --targets-in-memory``, the default, or ``--stream-targets``):
in memory, every used frame's targets are loaded once (~1 KB a frame for vlmkd); streamed, only the frame-ID
lookup and the logits are loaded and the larger targets (features, layer tokens) are read chunk by chunk
through a small cache (fasd.store_schema.streaming), while the trainer orders its draws in windows of chunks
(sampler.BlockWindowSampler) so each chunk is decompressed about once per epoch rather than once per frame.

A stream that replays stored views (StudentFrames.replay) reads every target's per-view array
``views/<target>`` (N, K, *shape) instead and takes the drawn view's row of it; it gets the view parameters
it replays from here too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fasd.errors import FasdError, listed, warn
from fasd.store_schema import layout
from fasd.store_schema.reader import load_targets, no_views, non_finite_targets, source_mismatch, unreadable_ids
from fasd.store_schema.store import TeacherStore, open_store
from fasd.store_schema.streaming import BlockCache, ChunkedTargets
from fasd.student_train.data import StudentFrames
from fasd.student_train.losses import TERMS
from fasd.student_train.model import PROJECTION_DIM
from fasd.student_train.mixed_replay import partner_views
from fasd.training.frames import DomainRows

# Store chunks per window of the streamed draw order. The cache holds two windows (a batch may straddle
# two): 2 x 16 x 4 MB at the default 4096-row chunks of 512-d features.
STREAM_WINDOW = 16
# Targets always held in memory, even when streaming (8 bytes a frame).
IN_MEMORY = (layout.LOGITS,)


def projection_dim(store: TeacherStore) -> int:
    """The teacher's feature dimension: what a student's projection head maps into (a store without features:
    the student's default width, for the terms that read the projection alone, e.g. the triplet)."""
    spec = store.targets.get(layout.FEATURE)
    return PROJECTION_DIM if spec is None else spec.shape[0]


def warn_raw_features(store_path: str, weights: dict[str, float]) -> None:
    """One line when the feature term will read features that are not unit vectors (a ViT teacher's raw CLS token):
    the term compares their directions (fasd.student_train.losses.feature_loss normalises them)."""
    if weights.get("feat", 0) <= 0:
        return
    store = open_store(store_path)
    names = store.dataset_names()
    if "feature" not in store.targets or not names:
        return
    try:
        sample = store.dataset(names[0])["feature"][:256].astype(np.float32)
    except Exception:  # a damaged chunk: loading the targets names it with the --repair command
        return
    norms = np.linalg.norm(sample[np.isfinite(sample).all(axis=1)], axis=1)
    if len(norms) and abs(float(np.median(norms)) - 1.0) > 1e-2:
        warn(f"{store_path}'s feature targets are not unit vectors (median norm {np.median(norms):.3g}, e.g. a ViT's "
             f"raw CLS token): the feature term compares their directions (normalised)")


def terms_without_targets(store_path: str, weights: dict[str, float]) -> list[str]:
    """The active loss terms (weight > 0) that read targets the store does not hold, e.g. the feature term on an
    ONNX teacher cached without --feature-output, named in one warning: the trainer switches them off."""
    held = open_store(store_path).targets
    lacking = {name: [t for t in TERMS[name].targets if t not in held] for name, weight in weights.items()
               if weight > 0}
    off = {name: targets for name, targets in lacking.items() if targets}
    if off:
        wanted = ", ".join(dict.fromkeys(t for targets in off.values() for t in targets))
        warn(f"{store_path} holds no {wanted} targets (only {', '.join(held)}): switching off the "
             f"{', '.join(TERMS[name].flag for name in off)} term(s); cache a teacher that provides them to use them")
    return list(off)


def _pick(values: np.ndarray, views: np.ndarray | None) -> np.ndarray:
    """Rows of targets (n, *shape), or with ``views`` each row's drawn view of per-view rows (n, K, *shape)."""
    return values if views is None else values[np.arange(len(values)), views]


@dataclass
class ArrayTargets:
    """One domain's targets in memory, aligned with its rows (with views: (rows, K, *shape) each)."""

    arrays: dict[str, np.ndarray]

    @property
    def blocks(self) -> None:
        return None  # no chunk order to respect

    def take(self, offsets: np.ndarray, views: np.ndarray | None = None) -> dict[str, np.ndarray]:
        return {name: _pick(values[offsets], views) for name, values in self.arrays.items()}


@dataclass
class StreamedTargets:
    """One domain's targets: small ones in memory, the others read from the store chunk by chunk."""

    chunked: dict[str, ChunkedTargets]
    store_rows: np.ndarray  # store row of each of the domain's rows
    in_memory: dict[str, np.ndarray]  # aligned with the domain's rows
    where: tuple[str, str]  # (store path, dataset) for error messages

    @property
    def blocks(self) -> np.ndarray:
        """The store chunk of each of the domain's rows."""
        chunk_rows = next(iter(self.chunked.values())).chunk_rows
        return self.store_rows // chunk_rows

    def take(self, offsets: np.ndarray, views: np.ndarray | None = None) -> dict[str, np.ndarray]:
        values = {name: _pick(array[offsets], views) for name, array in self.in_memory.items()}
        for name, chunked in self.chunked.items():
            values[name] = _pick(chunked.take(self.store_rows[offsets]), views)
            if not np.isfinite(values[name]).all():
                raise non_finite_targets(*self.where, name)
        return values


class FrameTargets:
    """The teacher targets of a stream's items (its domains concatenated), fetched a batch at a time."""

    def __init__(self, frames: StudentFrames, domains: list[ArrayTargets | StreamedTargets],
                 specs: dict[str, tuple[int, ...]]):
        self.domain_of, self.offset, self.domains, self.specs = frames.domain_of, frames.offset, domains, specs

    def __call__(self, items: np.ndarray | torch.Tensor) -> dict[str, torch.Tensor]:
        """{target: (n, *shape) float32 tensor} for item indices ``items`` (n,), or for (item, view) pairs
        (n, 2) of a stream that replays views."""
        items = np.asarray(items, dtype=np.int64)
        items, views = (items[:, 0], items[:, 1]) if items.ndim == 2 else (items, None)
        domain, offset = self.domain_of[items], self.offset[items]
        out = {name: np.empty((len(items), *shape), dtype=np.float32) for name, shape in self.specs.items()}
        for d in np.unique(domain):
            mask = domain == d
            picked = None if views is None else views[mask]
            for name, values in self.domains[d].take(offset[mask], picked).items():
                out[name][mask] = values
        return {name: torch.from_numpy(values) for name, values in out.items()}

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


def readable_parts(store_path: str, streams: list[list[DomainRows]]) -> list[list[DomainRows]]:
    """``streams`` (e.g. [train parts, val parts]) without the frames the store records as unreadable, with one
    warning naming them; a domain left without frames is a FasdError."""
    store = open_store(store_path)
    unreadable: dict[str, frozenset[str]] = {}
    dropped: dict[str, list[str]] = {}
    kept_streams = []
    for parts in streams:
        kept = []
        for part in parts:
            name = part.source.name
            if name not in unreadable:
                unreadable[name] = unreadable_ids(store, name)
            frame_ids = part.source.table.frame_id[part.rows]
            bad = np.fromiter((str(f) in unreadable[name] for f in frame_ids), dtype=bool, count=len(frame_ids))
            if bad.all():
                raise FasdError(f"{store_path} records every one of the {len(bad)} frames of '{name}' this run needs "
                                f"as unreadable (e.g. {frame_ids[0]}); fix its files and re-cache it")
            dropped.setdefault(name, []).extend(str(f) for f in frame_ids[bad])
            kept.append(DomainRows(part.source, part.rows[~bad]))
        kept_streams.append(kept)
    named = {name: ids for name, ids in dropped.items() if ids}
    if named:
        warn(f"{sum(map(len, named.values()))} frame(s) that {store_path} records as unreadable left out of training: "
             + "; ".join(f"'{name}' {listed(ids)}" for name, ids in named.items()))
    return kept_streams


def attach_targets(store_path: str, streams: list[StudentFrames],
                   names: tuple[str, ...] = (layout.FEATURE, layout.LOGITS), stream: bool = False,
                   window: int = STREAM_WINDOW) -> tuple[TeacherStore, list[FrameTargets]]:
    """Check the store holds targets ``names`` of every frame of ``streams`` (e.g. [train, val]) and build their
    lookups.

    ``stream`` reads the larger targets chunk by chunk through one cache of two ``window``s of chunks instead of
    loading them (``window``: the BlockWindowSampler's).
    Returns the store (its teacher fingerprint is recorded in the run's config) and one FrameTargets per stream.
    """
    store = open_store(store_path)
    specs = store.targets
    missing = [name for name in names if name not in specs]
    if missing:
        raise FasdError(f"the loss needs '{missing[0]}' targets but {store_path} holds only "
                        f"{', '.join(specs)}; cache a teacher that provides them or set that term's weight to 0")
    if store.views is None and any(frames.replay is not None for frames in streams):
        raise no_views(store_path)
    chunked_names = tuple(n for n in names if n not in IN_MEMORY) if stream else ()
    memory_names = tuple(n for n in names if n not in chunked_names)
    cache = BlockCache(2 * window)
    loaded = {}
    lookups = []
    for frames in streams:
        views = frames.replay is not None
        per_domain, view_params, partners = [], [], []
        for part in frames.domains:
            name = part.source.name
            if (name, views) not in loaded:
                store.dataset(name)
                why = source_mismatch(store, name, part.source.fingerprint())
                if why:
                    raise FasdError(f"the store's copy of '{name}' is stale: {why}; re-cache it with "
                                    f"`fasd cache-teacher --dataset {name} --store {store_path} --overwrite`")
                loaded[name, views] = load_targets(store, name, memory_names, views=views)
            targets = loaded[name, views]
            frame_ids = part.source.table.frame_id[part.rows]
            store_rows = targets.rows_for(frame_ids)
            absent = frame_ids[store_rows < 0]
            if len(absent):
                raise FasdError(
                    f"{len(absent)} of {len(frame_ids)} frames of '{name}' needed for training are missing from "
                    f"{store_path} (e.g. {', '.join(map(str, absent[:3]))}); cache them with "
                    f"`fasd cache-teacher --dataset {name} --store {store_path}`")
            in_memory = {n: targets.arrays[n][store_rows] for n in memory_names}
            if views:
                view_params.append(targets.view_params[store_rows])
                if targets.view_mix is not None:
                    partners.append(partner_views(part.source, targets, store_rows, store_path))
            if chunked_names:
                chunked = {n: ChunkedTargets(store.dataset(name)[layout.view_array(n) if views else n], cache)
                           for n in chunked_names}
                per_domain.append(StreamedTargets(chunked, store_rows, in_memory, (store_path, name)))
            else:
                per_domain.append(ArrayTargets(in_memory))
        if views:
            frames.set_views(view_params, partners or None)
        lookups.append(FrameTargets(frames, per_domain, {n: specs[n].shape for n in names}))
    return store, lookups
