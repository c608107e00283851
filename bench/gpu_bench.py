"""The first GPU session's measurements in one run (bench/gpu.sh calls this), appended to docs/benchmarks.md.

1. The ViT-B/16 cache job (`fasd cache-teacher`'s run_cache: HDF5 pack of 256 px frames, decode workers, uint8
   frames to the GPU, resize + normalise there, autocast, Zarr writes) at bf16 and fp16, batch 256 and 512,
   against the raw teacher forward on ready tensors (goal >= 8000 frames/s; the dense bf16 limit is ~28 000).
2. A resume on CUDA: a job interrupted mid-chunk, then resumed, against one uninterrupted job (bytes equal?).
3. Each recipe's cached-distillation training step (vlmkd, hatfas, mmda) with the trainer's mixed precision.

--dry-run: the same code on CPU at tiny sizes (tiny teachers, a few frames and steps), written to --out, so the
script is tested by the suite (tests/test_gpu_script.py) and cannot rot before a GPU comes.

    python bench/gpu_bench.py [--dry-run] [--out docs/benchmarks.md] [--device cuda]
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from cache_throughput import random_pack
from fasd.config import load_registry
from fasd.constants import MODALITIES
from fasd.data.open_source import open_source
from fasd.data.synth import synthesize
from fasd.device import default_workers, resolve_device
from fasd.store_schema.store import open_store
from fasd.student_train.run_config import TrainOptions
from fasd.student_train.trainer import Trainer
from fasd.teacher_cache.arch import TINY_ARCH
from fasd.teacher_cache.job import CacheOptions, run_cache, teacher_autocast
from fasd.teacher_cache.preprocess import normalize_batch
from fasd.training.precision import autocast_dtype
from mmda_throughput import mmda_store, mmda_teacher
from synthetic_targets import write_random_targets
from train_throughput import clip_teacher, deit_teacher, seconds_per_step


@dataclass(frozen=True)
class Sizes:
    clip_arch: str
    deit_arch: str
    frames: int  # frames per cache configuration (the first 2 x the largest batch warm up, untimed)
    frame_size: int
    batches: tuple[int, ...]
    steps: int  # timed training steps
    train_frames: int  # synthetic frames per domain for the training steps (>= (steps + 1) x batch / 0.6)


FULL = Sizes("ViT-B-16", "deit_base_patch16_224", 8192, 256, (256, 512), 10, 2600)
DRY = Sizes(TINY_ARCH, "deit_tiny_patch16_224", 40, 48, (4, 8), 2, 120)
PRECISIONS = ("bf16", "fp16")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def raw_fps(loaded, device: torch.device, batch: int, precision: str, repeats: int) -> float:
    """The teacher's forward alone on one normalised batch already on the device."""
    teacher = loaded.module.to(device)
    pixels = torch.randint(0, 256, (batch, loaded.input_size, loaded.input_size, 3), dtype=torch.uint8)
    images = normalize_batch(pixels.to(device), loaded.mean, loaded.std)
    with torch.inference_mode(), teacher_autocast(device, precision):
        teacher(images)
        _sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            teacher(images)
        _sync(device)
    return batch * repeats / (time.perf_counter() - start)


def cache_rows(sizes: Sizes, device: torch.device, tmp: Path) -> list[str]:
    source = random_pack(tmp, sizes.frames, sizes.frame_size, warm=2 * max(sizes.batches))
    loaded = clip_teacher(tmp, sizes.clip_arch)
    workers = default_workers()
    rows = []
    for precision in PRECISIONS:
        for batch in sizes.batches:
            options = CacheOptions(batch_size=batch, device=str(device), workers=workers, chunk_rows=4 * batch,
                                   precision=precision, progress=False)
            warm = replace(options, splits=("val",))  # kernels, allocator, workers: untimed
            run_cache(source, loaded, str(tmp / f"warm-{precision}-{batch}.zarr"), warm)
            report = run_cache(source, loaded, str(tmp / f"{precision}-{batch}.zarr"), replace(options,
                                                                                           splits=("train",)))
            raw = raw_fps(loaded, device, batch, precision, max(2, sizes.frames // batch // 2))
            rows.append(f"| {loaded.fingerprint['arch']} | {precision} | {batch} | {workers} | "
                        f"{report.frames_per_s:.0f} | {raw:.0f} | {report.frames_per_s / raw:.2f} |")
    return rows


def resume_row(sizes: Sizes, device: torch.device, tmp: Path) -> str:
    """An uninterrupted bf16 job and one interrupted at its 3rd forward (mid-chunk), then resumed."""
    (tmp / "resume").mkdir()
    source = random_pack(tmp / "resume", max(24, sizes.frames // 4), sizes.frame_size)
    loaded = clip_teacher(tmp, sizes.clip_arch)
    batch = sizes.batches[0]
    options = CacheOptions(batch_size=batch, device=str(device), workers=default_workers(), chunk_rows=2 * batch,
                           precision="bf16", progress=False)
    run_cache(source, loaded, str(tmp / "whole.zarr"), options)
    forward, calls = loaded.module.forward, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return forward(*args, **kwargs)

    loaded.module.forward = interrupted
    try:
        run_cache(source, loaded, str(tmp / "resumed.zarr"), options)
    except KeyboardInterrupt:
        pass
    loaded.module.forward = forward
    start = time.perf_counter()
    report = run_cache(source, loaded, str(tmp / "resumed.zarr"), options)
    seconds = time.perf_counter() - start
    whole, resumed = (open_store(str(tmp / name)).dataset("frames") for name in ("whole.zarr", "resumed.zarr"))
    names = list(loaded.targets)
    same = all(np.array_equal(whole[n][:], resumed[n][:], equal_nan=True) for n in names)
    worst = max(float(np.nanmax(np.abs(whole[n][:].astype(np.float64) - resumed[n][:]))) for n in names)
    return (f"| bf16, batch {batch}, chunk {2 * batch} rows, interrupted at the 3rd forward | "
            f"{report.chunks_written} of {report.chunks} chunks in {seconds:.1f} s | "
            f"{'yes' if same and report.completed else 'NO'} (largest difference {worst:.1e}) |")


def train_rows(sizes: Sizes, device: torch.device, tmp: Path) -> list[str]:
    rows = []
    dtype = autocast_dtype(device)
    precision = "fp32" if dtype is None else str(dtype).removeprefix("torch.")
    config = synthesize(tmp / "data", domains=2, frames=sizes.train_frames, size=112, seed=0, progress=False,
                        modalities=MODALITIES)  # RGB students read the same packs' RGB
    registry = load_registry(config)
    for recipe in ("vlmkd", "hatfas", "mmda"):
        folder = tmp / recipe
        folder.mkdir()
        store = str(folder / "t.zarr")
        if recipe == "mmda":
            mmda_store(store, registry, mmda_teacher(folder, sizes.clip_arch))
        else:
            loaded = (clip_teacher if recipe == "vlmkd" else deit_teacher)(
                folder, sizes.clip_arch if recipe == "vlmkd" else sizes.deit_arch)
            write_random_targets(store, [open_source(registry.dataset("alpha"))], loaded.fingerprint)
        options = TrainOptions.for_recipe(recipe, protocol="alpha-to-beta", sources=["alpha"], target="beta",
                                          config=str(config), store=store, epochs=1, warmup_epochs=0,
                                          device=str(device), **({"batch_size": 16} if sizes is DRY else {}))
        trainer = Trainer(registry, options, folder / "run", progress=False)
        trainer._build(lambda _msg: None)
        seconds = seconds_per_step(trainer, sizes.steps)
        batch = trainer.options.batch_size
        rows.append(f"| {recipe} | {trainer.options.student} | {batch} | {precision} | {seconds * 1e3:.1f} | "
                    f"{batch / seconds:.0f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes (what the test suite runs)")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"), help="markdown file appended to")
    parser.add_argument("--device", default="cuda", help="cuda (the default) or cuda:N; --dry-run uses cpu")
    args = parser.parse_args()
    device = resolve_device("cpu" if args.dry_run else args.device)
    if device.type != "cuda" and not args.dry_run:
        sys.exit("bench/gpu_bench.py: no CUDA device; run it on a GPU machine, or pass --dry-run")
    sizes = DRY if args.dry_run else FULL
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (dry run, tiny sizes)"
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cache = cache_rows(sizes, device, tmp)
        resume = resume_row(sizes, device, tmp)
        train = train_rows(sizes, device, tmp)
    total = time.perf_counter() - started
    today = datetime.date.today().isoformat()
    lines = ["", f"## GPU run — `bench/gpu.sh`{' --dry-run' if args.dry_run else ''} ({today}, {name})", "",
             f"torch {torch.__version__}; {sizes.frames} random {sizes.frame_size} px frames per cache "
             f"configuration (HDF5 pack), random-weight teachers; the whole script took {total:.0f} s.", "",
             "Cache job (decode workers → uint8 to the device → resize + normalise there → autocast teacher → "
             "Zarr writes overlapping the next batch) vs the raw teacher forward on ready batches (goal ≥ 8000 "
             "ViT-B/16 frames/s):", "",
             "| teacher | precision | batch | workers | job frames/s | raw frames/s | job / raw |",
             "|---|---|---|---|---|---|---|", *cache, "",
             "Resume on the device (interrupted job resumed, against one uninterrupted job):", "",
             "| run | resumed work | bytes equal |", "|---|---|---|", resume, "",
             "Cached-distillation training step per recipe (the real trainer step: loading, augmentation, "
             "forward, loss, backward, AdamW) with the trainer's mixed precision:", "",
             "| recipe | student | batch | autocast | ms/step | frames/s |", "|---|---|---|---|---|---|", *train, ""]
    with open(args.out, "a", encoding="utf-8") as out:
        out.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
