"""The caching job: run the frozen teacher once over a dataset's frames and write the store chunk by chunk.

Batches never straddle a chunk, so a resumed run computes exactly the batches an uninterrupted run
would and the stored arrays are identical. Decoding runs in DataLoader workers and chunk writes in a
background thread (at most MAX_PENDING_WRITES chunks queued), both behind the teacher's compute. On CUDA only
uint8 frames cross to the device (pinned, non-blocking), where they are resized (PIL's bytes, fasd.teacher_cache
.preprocess.resize_batch) and normalised; the teacher runs under --precision's autocast.

Several processes fill one store (each its own chunks, ``--shard I/N`` or torchrun's ranks). In a
torch.distributed process group (torchrun), rank 0 prepares the layout before the other ranks open it and
reports the totals after a barrier; independent shards (several machines) may all prepare it at once,
which the store's layout code makes safe, and only shard 0 may replace a layout with ``--overwrite``.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch
import zarr
from torch.utils.data import DataLoader, Dataset, default_collate
from tqdm import tqdm

from fasd import distributed
from fasd.constants import MODALITIES
from fasd.data.source import FrameSource, UnreadableFrame
from fasd.device import resolve_device
from fasd.errors import FasdError
from fasd.store_schema import layout, writer
from fasd.store_schema.store import create_or_check_store, read_strings
from fasd.teacher_cache.preprocess import normalize_batch, resize_batch, resize_uint8
from fasd.teacher_cache.registry import LoadedTeacher
from fasd.training.modalities import warn_absent_modalities
from fasd.training.precision import autocast
from fasd.views import PARAMS, ViewSettings, apply_view, draw_views


@dataclass
class CacheOptions:
    splits: tuple[str, ...] = ("train", "val", "test")
    batch_size: int = 256
    device: str = "auto"
    workers: int = 0
    shard: int = 0
    num_shards: int = 1
    chunk_rows: int = 4096
    overwrite: bool = False
    strict: bool = False
    progress: bool = True
    views: ViewSettings = field(default_factory=ViewSettings)  # --views K: K augmented views per frame too
    precision: str = "auto"  # --precision: the teacher's autocast, see PRECISIONS
    resize_on: str = "auto"  # "workers" (PIL) or "device" (resize_batch, PIL's bytes); auto: device on CUDA


# --precision: auto is fasd.training.precision's policy (bf16 autocast on CUDA where supported, else fp16; fp32
# on CPU); the others force fp32 or bf16/fp16 autocast on any device (bf16 on CPU: tests/test_cache_precision.py).
PRECISIONS: dict[str, torch.dtype | None] = {"auto": None, "fp32": torch.float32, "bf16": torch.bfloat16,
                                             "fp16": torch.float16}
RESIZE_ON = ("auto", "workers", "device")
MAX_PENDING_WRITES = 2  # chunks computed but not yet in Zarr: writes overlap compute, memory stays bounded


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise FasdError(f"--precision {precision} is not supported; pass one of {', '.join(PRECISIONS)}")


def store_fingerprint(loaded: LoadedTeacher, views: ViewSettings) -> dict:
    """The teacher fingerprint a store records; the view settings are part of it (a store cached with other
    views is refused like a store of another teacher). Without views it is the teacher's own."""
    return {**loaded.fingerprint, layout.VIEWS_KEY: views.to_json()} if views.count else loaded.fingerprint


@dataclass
class CacheReport:
    dataset: str
    rows: int
    chunks: int
    chunks_written: int = 0
    frames_computed: int = 0
    unreadable: list[str] = field(default_factory=list)
    seconds: float = 0.0
    completed: bool = False

    @property
    def frames_per_s(self) -> float:
        return self.frames_computed / self.seconds if self.seconds > 0 else 0.0

    @classmethod
    def total(cls, reports: list[CacheReport]) -> CacheReport:
        """The work of several shards of one dataset, as one report (they ran in parallel)."""
        first = reports[0]
        return cls(first.dataset, first.rows, first.chunks, sum(r.chunks_written for r in reports),
                   sum(r.frames_computed for r in reports), [i for r in reports for i in r.unreadable],
                   max(r.seconds for r in reports), first.completed)


class TeacherFrames(Dataset):
    """Store row -> (uint8 pixels at the teacher's size, its K views' pixels (K, size, size, 3), their
    parameters (K, P), readable flag). Unreadable frames are zeros (their view parameters are still drawn).
    ``resize=False``: the pixels at the frame's own size, resized on the device (``resize_batch``, PIL's bytes);
    ``collate`` resizes a batch of frames of several sizes here instead."""

    def __init__(self, source: FrameSource, source_rows: np.ndarray, size: int, views: ViewSettings,
                 resize: bool = True):
        self.source, self.source_rows, self.size, self.views = source, source_rows, size, views
        self.resize = resize

    def __len__(self) -> int:
        return len(self.source_rows)

    def __getitem__(self, row: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
        source_row = int(self.source_rows[row])
        params = draw_views(self.source.table.frame_id[source_row], self.views)
        try:
            image = self.source.read_image(source_row)
        except UnreadableFrame:
            zeros = torch.zeros(1 + self.views.count, self.size, self.size, 3, dtype=torch.uint8)
            return zeros[0], zeros[1:], torch.from_numpy(params), False
        pixels = np.array(resize_uint8(image, self.size) if self.resize else image)
        views = np.stack([apply_view(image, p, self.size) for p in params]) if self.views.count else (
            np.zeros((0, self.size, self.size, 3), dtype=np.uint8))
        return torch.from_numpy(pixels), torch.from_numpy(views), torch.from_numpy(params), True

    def collate(self, items: list[tuple]) -> tuple:
        """default_collate, after resizing the pixels (PIL, in the worker) when the frames differ in size."""
        if len({tuple(item[0].shape) for item in items}) > 1:
            items = [(torch.from_numpy(np.array(resize_uint8(item[0].numpy(), self.size))), *item[1:])
                     for item in items]
        return default_collate(items)


class ModalityTeacherFrames(Dataset):
    """For a multimodal teacher (LoadedTeacher.modalities beyond rgb): store row -> (every modality's uint8 pixels
    at the teacher's size (M, size, size, 3) in MODALITIES order, the modality mask (M,) bool, no view
    parameters, readable flag). An absent modality is the all-zero frame (FrameSource.read_modalities)."""

    def __init__(self, source: FrameSource, source_rows: np.ndarray, size: int):
        self.source, self.source_rows, self.size = source, source_rows, size

    def __len__(self) -> int:
        return len(self.source_rows)

    def __getitem__(self, row: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
        no_params = torch.zeros(0, dtype=torch.float32)
        try:
            frame = self.source.read_modalities(int(self.source_rows[row]))
        except UnreadableFrame:
            return (torch.zeros(len(MODALITIES), self.size, self.size, 3, dtype=torch.uint8),
                    torch.ones(len(MODALITIES), dtype=torch.bool), no_params, False)
        pixels = np.stack([resize_uint8(frame[m], self.size) for m in MODALITIES])
        return torch.from_numpy(pixels), torch.from_numpy(np.asarray(frame["mask"], dtype=bool)), no_params, True


def multimodal(loaded: LoadedTeacher) -> bool:
    return tuple(loaded.modalities) != ("rgb",)


def chunk_batches(chunks: list[int], rows: int, chunk_rows: int, batch_size: int) -> list[list[int]]:
    """Batches of store rows, chunk by chunk, never crossing a chunk boundary."""
    batches = []
    for chunk in chunks:
        start, end = chunk * chunk_rows, min((chunk + 1) * chunk_rows, rows)
        batches += [list(range(s, min(s + batch_size, end))) for s in range(start, end, batch_size)]
    return batches


def run_cache(source: FrameSource, loaded: LoadedTeacher, store_path: str, options: CacheOptions) -> CacheReport:
    check_precision(options.precision)
    if options.resize_on not in RESIZE_ON:
        raise FasdError(f"resize_on {options.resize_on} is not one of {', '.join(RESIZE_ON)}")
    table = source.table
    source_rows = table.rows_in_splits(options.splits)
    if len(source_rows) == 0:
        raise FasdError(f"dataset '{source.name}' has no frames in splits {','.join(options.splits)}")
    if multimodal(loaded) and options.views.count:
        raise FasdError(f"--views: the {loaded.kind} teacher reads {', '.join(loaded.modalities)}; stored views "
                        "are RGB-only, cache it without --views")
    if multimodal(loaded):
        warn_absent_modalities([source], tuple(loaded.modalities), model=f"{loaded.kind} teacher")
    group = distributed.main_first(lambda: _prepare_layout(source, source_rows, loaded, store_path, options))
    rows = len(source_rows)
    chunks = writer.pending_chunks(group, options.shard, options.num_shards)
    report = CacheReport(source.name, rows, writer.chunk_count(rows, options.chunk_rows))
    if chunks:
        _compute_chunks(source, source_rows, loaded, group, chunks, options, report)
    if distributed.current().world_size == 1:
        report.completed = writer.finalize(group)
        return report
    distributed.barrier()  # every rank has written its chunks
    total = CacheReport.total(distributed.all_gather(report))
    total.completed = distributed.broadcast(writer.finalize(group) if distributed.current().is_main else None)
    return total


def _prepare_layout(source: FrameSource, source_rows: np.ndarray, loaded: LoadedTeacher, store_path: str,
                    options: CacheOptions) -> zarr.Group:
    """Create or verify the store and the dataset's group. Only shard 0 replaces (deletes) a layout that does
    not match, so shards started together never delete each other's chunks."""
    table = source.table
    replace = options.overwrite and options.shard == 0
    fingerprint = {**source.fingerprint(), "splits": list(options.splits)}
    columns = writer.frame_columns(table.frame_id[source_rows], table.label[source_rows], table.split[source_rows],
                                   table.video_id[source_rows], table.attack_type[source_rows])
    try:
        store = create_or_check_store(store_path, store_fingerprint(loaded, options.views), loaded.texts, replace)
        return writer.prepare_dataset(store, source.name, fingerprint, str(source.path), columns,
                                      options.chunk_rows, replace)
    except FasdError as exc:
        if options.overwrite and not replace:
            raise FasdError(f"{exc} (with --shard {options.shard}/{options.num_shards}, only shard 0 replaces a "
                            f"layout: run shard 0 with --overwrite first, then the others)") from None
        raise


def _compute_chunks(source: FrameSource, source_rows: np.ndarray, loaded: LoadedTeacher, group: zarr.Group,
                    chunks: list[int], options: CacheOptions, report: CacheReport) -> None:
    device = resolve_device(options.device)
    teacher = loaded.module.to(device)
    rows = len(source_rows)
    batches = chunk_batches(chunks, rows, options.chunk_rows, options.batch_size)
    on_device = options.resize_on == "device" or (options.resize_on == "auto" and device.type == "cuda")
    frames = (ModalityTeacherFrames(source, source_rows, loaded.input_size) if multimodal(loaded) else
              _rgb_frames(source, source_rows, loaded.input_size, options, on_device))
    forward = forward_modalities if multimodal(loaded) else _forward
    loader = DataLoader(frames, batch_sampler=batches, collate_fn=getattr(frames, "collate", None),
                        num_workers=options.workers, pin_memory=device.type == "cuda",
                        persistent_workers=False, prefetch_factor=4 if options.workers else None)
    frame_ids = read_strings(group["frame_id"])
    total = sum(len(b) for b in batches)
    pending: list[Future] = []
    names = _output_names(loaded, options.views)
    outputs: dict[str, list[np.ndarray]] = {name: [] for name in names}
    filled = 0
    chunk_iter = iter(chunks)
    chunk = next(chunk_iter)
    chunk_size = min(options.chunk_rows, rows - chunk * options.chunk_rows)
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=1) as writes, tqdm(
            total=total, unit="frame", desc=f"cache {source.name}", disable=not options.progress,
            smoothing=0.1) as bar:
        try:
            # the second item: the views' pixels (RGB teachers) or the modality mask (multimodal teachers)
            for batch_rows, (pixels, view_pixels, params, readable) in zip(batches, loader):
                result = forward(teacher, loaded, pixels, view_pixels, device, options.batch_size,
                                 options.precision)
                if options.views.count:
                    result |= _view_columns(params.numpy(), options.views)
                bad = ~readable.numpy()
                if bad.any():
                    ids = [str(i) for i in frame_ids[np.asarray(batch_rows)[bad]]]
                    if options.strict:
                        raise FasdError(f"{len(ids)} unreadable frame(s) in '{source.name}' "
                                        f"(--strict): {', '.join(ids[:5])}")
                    report.unreadable += ids
                    for name, values in result.items():
                        if name not in (layout.VIEW_PARAMS, layout.VIEW_MIX):
                            values[bad] = np.nan
                for name in outputs:
                    outputs[name].append(result[name])
                filled += len(batch_rows)
                bar.update(len(batch_rows))
                if filled == chunk_size:
                    while len(pending) >= MAX_PENDING_WRITES:  # a slow store holds the compute, not the memory
                        pending.pop(0).result()
                    pending.append(writes.submit(writer.write_chunk, group, chunk,
                                                 {name: np.concatenate(parts) for name, parts in outputs.items()}))
                    report.chunks_written += 1
                    report.frames_computed += filled
                    outputs, filled = {name: [] for name in names}, 0
                    chunk = next(chunk_iter, None)
                    if chunk is not None:
                        chunk_size = min(options.chunk_rows, rows - chunk * options.chunk_rows)
                    _raise_failed_writes(pending)
        finally:
            # Whole chunks already computed are always written before leaving (Ctrl-C, errors).
            for future in pending:
                future.result()
            report.seconds = time.perf_counter() - start
    if report.unreadable:
        tqdm.write(f"warning: {len(report.unreadable)} unreadable frame(s) in '{source.name}' stored as NaN: "
                  f"{', '.join(report.unreadable[:5])}")


def _output_names(loaded: LoadedTeacher, views: ViewSettings) -> list[str]:
    """The arrays each chunk write fills: the targets, and with views their per-view arrays and the parameters."""
    if not views.count:
        return list(loaded.targets)
    mix = [layout.VIEW_MIX] if views.mix.active else []
    return [*loaded.targets, *(layout.view_array(name) for name in loaded.targets), layout.VIEW_PARAMS, *mix]


def _rgb_frames(source: FrameSource, source_rows: np.ndarray, size: int, options: CacheOptions,
                on_device: bool = False) -> Dataset:
    """An RGB teacher's frames: with ``--mix`` their views are mixed (fasd.teacher_cache.mixed_views), resized in
    the workers; else resized on the device when ``on_device``."""
    if not options.views.mix.active:
        return TeacherFrames(source, source_rows, size, options.views, resize=not on_device)
    from fasd.teacher_cache.mixed_views import MixedTeacherFrames

    return MixedTeacherFrames(source, source_rows, size, options.views, options.chunk_rows)


def _view_columns(params: np.ndarray, views: ViewSettings) -> dict[str, np.ndarray]:
    """A batch's stored view arrays: views/params, and with ``--mix`` views/mix (the columns after them)."""
    if not views.mix.active:
        return {layout.VIEW_PARAMS: params}
    return {layout.VIEW_PARAMS: params[..., :PARAMS], layout.VIEW_MIX: params[..., PARAMS:]}


def teacher_autocast(device: torch.device, precision: str = "auto") -> AbstractContextManager:
    """The teacher forward's autocast for --precision (PRECISIONS)."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        return autocast(device)
    return nullcontext() if dtype == torch.float32 else torch.autocast(device.type, dtype=dtype)


def _forward(teacher: torch.nn.Module, loaded: LoadedTeacher, pixels: torch.Tensor, view_pixels: torch.Tensor,
             device: torch.device, batch_size: int, precision: str = "auto") -> dict[str, np.ndarray]:
    """The teacher's targets of a batch of B frames and of their K views each: {target: (B, *shape)} and
    {views/<target>: (B, K, *shape)}. The B (K + 1) images go through the teacher ``batch_size`` at a time.
    ``pixels``: uint8 (B, H, W, 3), resized to the teacher's size on the device when not already there."""
    count, views = len(pixels), view_pixels.shape[1]
    images = resize_batch(pixels.to(device, non_blocking=True), loaded.input_size)
    if views:
        images = torch.cat([images, view_pixels.flatten(0, 1).to(device, non_blocking=True)])
    parts: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(images), batch_size):
        chunk = normalize_batch(images[start:start + batch_size], loaded.mean, loaded.std)
        with torch.inference_mode(), teacher_autocast(device, precision):
            for name, value in teacher(chunk).items():
                parts.setdefault(name, []).append(value.float().cpu())
    result = {}
    for name, values in parts.items():
        value = torch.cat(values).numpy()
        result[name] = value[:count]
        if views:
            result[layout.view_array(name)] = value[count:].reshape(count, views, *value.shape[1:])
    return result


def forward_modalities(teacher: torch.nn.Module, loaded: LoadedTeacher, pixels: torch.Tensor, mask: torch.Tensor,
                        device: torch.device, batch_size: int, precision: str = "auto") -> dict[str, np.ndarray]:
    """A multimodal teacher's targets of B frames: pixels (B, M, S, S, 3) uint8, mask (B, M) bool; every modality
    normalised with the teacher's mean/std, ``teacher({modality: images}, mask)`` ``batch_size`` frames at a time."""
    parts: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(pixels), batch_size):
        chunk = pixels[start:start + batch_size].to(device, non_blocking=True)
        images = {m: normalize_batch(chunk[:, i], loaded.mean, loaded.std) for i, m in enumerate(MODALITIES)}
        with torch.inference_mode(), teacher_autocast(device, precision):
            for name, value in teacher(images, mask[start:start + batch_size].to(device)).items():
                parts.setdefault(name, []).append(value.float().cpu())
    return {name: torch.cat(values).numpy() for name, values in parts.items()}


def _raise_failed_writes(pending: list[Future]) -> None:
    for future in [f for f in pending if f.done()]:
        future.result()
        pending.remove(future)
