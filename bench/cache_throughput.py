"""Cache-job throughput vs the raw teacher forward on the same frames (goal: ratio >= 0.9).

Both sides use the same random-weight CLIP (ViT-B/16 by default; the weights do not change the cost),
the same frames and batch size. "Raw" times only teacher forwards on tensors already normalised and on
the device; "job" is the full `fasd cache-teacher` path: decode, resize, transfer, forward, Zarr writes.

    python bench/cache_throughput.py [--arch ViT-B-16] [--frames 128] [--batch-size 32] [--device auto]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fasd.config import load_registry
from fasd.data.open_source import open_source
from fasd.data.synth import synthesize
from fasd.teacher_cache.arch import openai_state_dict, random_clip
from fasd.device import default_workers, resolve_device
from fasd.teacher_cache.job import CacheOptions, run_cache
from fasd.teacher_cache.preprocess import normalize_batch, resize_uint8
from fasd.teacher_cache.registry import LoadedTeacher, TeacherOptions, load_teacher
from fasd.training.precision import autocast


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="ViT-B-16")
    parser.add_argument("--frames", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=default_workers())
    args = parser.parse_args()
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
