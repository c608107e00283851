"""``fasd ingest``: native dataset layout -> HDF5 frame pack.

The pack is written to ``<out>.partial`` and renamed to ``out`` only when the run succeeds, so an
interrupted run never leaves a half pack under the final name. With ``workers > 1`` items are
decoded in a process pool, a bounded window ahead of the writer, and written in plan order, so
the pack is identical whatever the number of workers.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from itertools import islice
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from fasd.constants import STUDENT_INPUT_SIZE
from fasd.data.hdf5_pack import PackWriter
from fasd.data.ingest import celeba, faces, mcio, mmdg, oulu, replay
from fasd.data.ingest.geometry import DEFAULT_MARGIN
from fasd.data.ingest.plan import LAYOUTS, OPTIONAL_OPTIONS, Batch, IngestOptions, Item, ItemSkipped, Plan
from fasd.data.ingest.readers import require_av
from fasd.data.ingest.summary import IngestSummary
from fasd.errors import FasdError
from fasd.io_checks import refuse_replacing

LAYOUT_MODULES = (celeba, faces, mcio, mmdg, oulu, replay)  # importing each registers its layout
INGEST_KINDS = tuple(LAYOUTS)
MIN_SIZE = 8
ITEMS_AHEAD_PER_WORKER = 4


def run_ingest(kind: str, root: Path, out: Path, size: int = STUDENT_INPUT_SIZE, frames_per_video: int | None = None,
               protocol: str | None = None, workers: int = 1, margin: float = DEFAULT_MARGIN,
               lists: Path | None = None, dataset: str | None = None, progress: bool = True,
               overwrite: bool = False, detector: str | None = None, detector_weights: str | None = None,
               crop_scale: float | None = None) -> IngestSummary:
    """Ingest the dataset of layout ``kind`` at ``root`` into the HDF5 frame pack ``out`` (an existing ``out``
    only with ``overwrite``, and only a pack fasd ingest wrote)."""
    root, out = Path(root), Path(out)
    options = IngestOptions(size=size, margin=margin, frames_per_video=frames_per_video, protocol=protocol,
                            lists=None if lists is None else Path(lists), dataset=dataset, detector=detector,
                            detector_weights=detector_weights, crop_scale=crop_scale)
    _check(kind, root, out, options, workers)
    refuse_replacing(out, "--out", overwrite, _ingested_pack, "a pack")
    layout = LAYOUTS[kind]
    if layout.video:
        require_av()
    plan = layout.plan(root, options)
    summary = IngestSummary(kind, out, plan.unit, plan.seen, skipped=list(plan.skipped), excluded=plan.excluded)
    partial = out.with_name(out.name + ".partial")
    try:
        _write(plan, partial, summary, size, workers, progress)
        if summary.frames == 0:
            raise FasdError(f"no frames ingested from {root}: {summary.format()}")
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return summary


def _write(plan: Plan, path: Path, summary: IngestSummary, size: int, workers: int, progress: bool) -> None:
    bar = tqdm(total=sum(item.units for item in plan.items), unit=plan.unit[:-1], desc=f"ingest {summary.kind}",
               disable=not progress)
    with bar, PackWriter(path, dataset=summary.out.stem, size=size, source=summary.kind,
                         crop_policy=plan.crop_policy, modalities=plan.modalities) as writer:
        for item, batch in zip(plan.items, _load_all(plan.items, workers)):
            if batch.images:
                writer.append(np.stack(batch.images), batch.frame_ids, [m.label for m in batch.metas],
                              [m.split for m in batch.metas], [m.video_id for m in batch.metas],
                              [m.attack_type for m in batch.metas],
                              **{name: np.stack(values) for name, values in batch.modalities.items()})
            summary.add(batch)
            bar.update(item.units)


def _ingested_pack(path: Path) -> bool:
    """A frame pack fasd ingest wrote (its ``source`` attribute names an ingest layout)."""
    try:
        with h5py.File(path, "r") as handle:
            return handle.attrs.get("source") in LAYOUTS
    except OSError:
        return False


def _check(kind: str, root: Path, out: Path, options: IngestOptions, workers: int) -> None:
    layout = LAYOUTS.get(kind)
    if not root.is_dir():
        raise FasdError(f"dataset root not found: {root}")
    if out.is_dir():
        raise FasdError(f"--out {out} is a folder: give the path of the .h5 pack to write")
    if options.size < MIN_SIZE:
        raise FasdError(f"--size must be at least {MIN_SIZE} pixels, got {options.size}")
    if options.margin < 0:
        raise FasdError(f"--margin must be >= 0 (fraction of the face box added on each side), got {options.margin}")
    if workers < 1:
        raise FasdError(f"--workers must be >= 1, got {workers}")
    if options.frames_per_video is not None:
        if not layout.video:
            videos = ", ".join(name for name, other in LAYOUTS.all().items() if other.video)
            raise FasdError(f"--frames-per-video applies to video datasets ({videos}), not {kind}")
        if options.frames_per_video < 1:
            raise FasdError(f"--frames-per-video must be >= 1, got {options.frames_per_video}")
    for option, flag in OPTIONAL_OPTIONS.items():
        if getattr(options, option) is not None and option not in layout.options:
            users = ", ".join(name for name, other in LAYOUTS.all().items() if option in other.options)
            raise FasdError(f"{flag} applies to {users} only, not {kind}")


def _load(item: Item) -> Batch:
    try:
        return item.load()
    except ItemSkipped as skip:
        return Batch(skipped=[skip.at(item.name)])


def _load_all(items: Iterable[Item], workers: int) -> Iterator[Batch]:
    """Each item's batch, in order; with workers > 1 a bounded window of items is decoded ahead."""
    if workers == 1:
        yield from map(_load, items)
        return
    pending = iter(items)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        window: deque[Future] = deque(pool.submit(_load, item)
                                      for item in islice(pending, workers * ITEMS_AHEAD_PER_WORKER))
        while window:
            batch = window.popleft().result()
            for item in islice(pending, 1):
                window.append(pool.submit(_load, item))
            yield batch
