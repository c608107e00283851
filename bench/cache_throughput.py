"""Cache-job throughput vs the raw teacher forward on the same frames (goal: ratio >= 0.9).

Both sides use the same random-weight CLIP (ViT-B/16 by default; the weights do not change the cost),
the same frames and batch size. "Raw" times only teacher forwards on tensors already normalised and on
the device; "job" is the full `fasd cache-teacher` path: decode, resize, transfer, forward, Zarr writes.

    python bench/cache_throughput.py [--arch ViT-B-16] [--frames 128] [--batch-size 32] [--device auto]

`--teacher null` times the feeder alone (no teacher): DataLoader workers reading a pack of --frame-size frames
and batching them, once resizing to 224 on the CPU (PIL, as the job does on CPU) and once passing uint8 frames at
their own size (the job on CUDA resizes on the GPU), for each --workers count; and prints how many such feeders one
GPU caching GPU_FPS ViT-B/16 frames/s would need.

    python bench/cache_throughput.py --teacher null --workers 1,2 --frames 2048 --frame-size 256
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from torch.utils.data import DataLoader

from fasd.config import load_registry, write_config
from fasd.data.hdf5_pack import PackWriter
from fasd.data.open_source import open_source
from fasd.data.synth import synthesize
from fasd.teacher_cache.arch import openai_state_dict, random_clip
from fasd.device import default_workers, resolve_device
from fasd.teacher_cache.job import CacheOptions, TeacherFrames, run_cache
from fasd.teacher_cache.preprocess import normalize_batch, resize_uint8
from fasd.teacher_cache.registry import LoadedTeacher, TeacherOptions, load_teacher
from fasd.training.precision import autocast
from fasd.views import ViewSettings

GPU_FPS = 8000  # the cache job's goal on one H100/H200 (ViT-B/16)
TEACHER_SIZE = 224


def raw_forward_fps(loaded: LoadedTeacher, source, rows, batch_size: int, device: torch.device) -> float:
    """The teacher's forward alone over pre-decoded, pre-normalised batches on the device."""
    teacher = loaded.module.to(device)
    pixels = torch.from_numpy(np.stack([resize_uint8(source.read_image(int(r)), loaded.input_size)
                                        for r in rows]))
    batches = [normalize_batch(pixels[i:i + batch_size].to(device), loaded.mean, loaded.std)
               for i in range(0, len(rows), batch_size)]
    with torch.inference_mode(), autocast(device):
        teacher(batches[0])  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for batch in batches:
            teacher(batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
    return len(rows) / (time.perf_counter() - start)


def feeder_fps(source, workers: int, batch_size: int, resize: bool) -> float:
    """Frames/s of the job's DataLoader alone (TeacherFrames, its collate), after the first batch (worker start)."""
    frames = TeacherFrames(source, np.arange(len(source)), TEACHER_SIZE, ViewSettings(), resize=resize)
    loader = DataLoader(frames, batch_size=batch_size, collate_fn=frames.collate, num_workers=workers,
                        pin_memory=torch.cuda.is_available(), prefetch_factor=4 if workers else None)
    batches = iter(loader)
    first = len(next(batches)[0])
    start = time.perf_counter()
    count = sum(len(batch[0]) for batch in batches)
    return count / (time.perf_counter() - start) if count else float(first)


def random_pack(folder: Path, frames: int, size: int, warm: int = 0):
    """A frame source of ``frames`` random ``size`` px frames in an HDF5 pack (reading and resizing cost what real
    frames cost; the teacher's cost does not depend on the pixels), registered as dataset "frames"; the first
    ``warm`` frames are its "val" split (for an untimed warm-up run), the others "train"."""
    pack = folder / "frames.h5"
    rng = np.random.default_rng(0)
    with PackWriter(pack, "frames", size, "bench", "none") as writer:
        for start in range(0, frames, 256):
            count = min(256, frames - start)
            ids = [f"f{start + i:06d}" for i in range(count)]
            splits = ["val" if start + i < warm else "train" for i in range(count)]
            writer.append(rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8), ids, np.arange(count) % 2,
                          splits, ids, [""] * count)
    config = folder / "fasd.toml"
    write_config(config, {"frames": {"format": "hdf5", "path": str(pack)}}, None)
    return open_source(load_registry(config).dataset("frames"))


def null_teacher(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        source = random_pack(Path(tmp), args.frames, args.frame_size)
        print(f"feeder alone: {args.frames} frames of {args.frame_size} px from an HDF5 pack, batch {args.batch_size}, "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
        print(f"| workers | resize on | frames/s | frames/s per worker | feeders for {GPU_FPS} frames/s |")
        print("|---|---|---|---|---|")
        for workers in (int(w) for w in args.workers.split(",")):
            for resize, where in ((True, "CPU (PIL, workers)"), (False, "GPU (uint8 frames cross)")):
                fps = feeder_fps(source, workers, args.batch_size, resize)
                print(f"| {workers} | {where} | {fps:.0f} | {fps / max(workers, 1):.0f} | "
                      f"{math.ceil(GPU_FPS / fps)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", choices=("clip", "null"), default="clip",
                        help="null: time the feeder alone (no teacher)")
    parser.add_argument("--arch", default="ViT-B-16")
    parser.add_argument("--frames", type=int, default=128)
    parser.add_argument("--frame-size", type=int, default=256, help="--teacher null: side of the packed frames")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", default=str(default_workers()),
                        help="decode workers (--teacher null: a comma-separated list)")
    args = parser.parse_args()
    if args.teacher == "null":
        return null_teacher(args)
    args.workers = int(args.workers)
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        config = synthesize(tmp / "data", domains=1, frames=args.frames, size=112, seed=0, progress=False)
        source = open_source(load_registry(config).dataset("alpha"))
        checkpoint = tmp / "teacher.pt"
        torch.save(openai_state_dict(random_clip(args.arch)), checkpoint)
        loaded = load_teacher("clip", TeacherOptions(checkpoint))
        rows = np.arange(len(source))
        # Warm the job's path once (first-call allocations), then time a fresh store.
        run_cache(source, loaded, str(tmp / "warm.zarr"),
                  CacheOptions(batch_size=args.batch_size, device=str(device), progress=False, workers=0))
        raw = raw_forward_fps(loaded, source, rows, args.batch_size, device)
        report = run_cache(source, loaded, str(tmp / "teacher.zarr"),
                           CacheOptions(batch_size=args.batch_size, device=str(device), progress=False,
                                        workers=args.workers, chunk_rows=max(args.batch_size, 64)))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device           {name}")
    print(f"teacher          {loaded.fingerprint['arch']} (random weights), batch {args.batch_size}, "
          f"{args.frames} frames, {args.workers} workers")
    print(f"raw forward      {raw:9.1f} frames/s")
    print(f"cache job        {report.frames_per_s:9.1f} frames/s")
    print(f"ratio job / raw  {report.frames_per_s / raw:9.3f}   (goal >= 0.9)")


if __name__ == "__main__":
    sys.exit(main())
