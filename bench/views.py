"""Views (consistent teaching): what `cache-teacher --views K` costs and what it changes.

1. Cache job with K views vs the raw teacher forward over the same number of images (goal: ratio >= 0.9):
   a random-weight CLIP (ViT-B/16 by default; weights do not change the cost), each frame + its K views.
2. Bytes per frame of the view arrays vs the single-view targets (goal: K x, within 5 %), uncompressed and
   as stored (compressed).
3. The student step (vlmkd: MobileNetV3-Small, CE + KL + feature + triplet, real trainer step) with views
   replayed vs the student's own random augmentation (goal: <= 1.15 x).
4. Consistency: the cosine between the cached CLS feature a draw trains on and the teacher's output on the
   view the student actually sees (rendered at the teacher's size), with views (the stored view's target)
   and without (the unaugmented frame's target vs a random crop/flip/jitter of the student's ranges).
   The teacher is the tiny CLIP fine-tuned briefly on the synthetic sources, so its features mean something.
5. Held-out ACER, mean ± std over seeds, training with and without views from the same store.

    python bench/views.py [--views 4] [--arch ViT-B-16] [--frames 36] [--seeds 0,1,2] [--skip-cache | --only-cache]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fasd.config import load_registry
from fasd.data.open_source import open_source
from fasd.data.synth import synthesize
from fasd.device import resolve_device
from fasd.store_schema import layout
from fasd.store_schema.store import open_store, read_strings
from fasd.student_train.run_config import TrainOptions
from fasd.student_train.trainer import Trainer
from fasd.teacher_cache.arch import TINY_ARCH, openai_state_dict, random_clip
from fasd.teacher_cache.finetune import finetune_teacher
from fasd.teacher_cache.job import CacheOptions, run_cache
from fasd.teacher_cache.preprocess import normalize_batch, resize_uint8
from fasd.teacher_cache.registry import LoadedTeacher, TeacherOptions, load_teacher
from fasd.training.precision import autocast
from fasd.views import ViewSettings, apply_view, draw_views
from train_throughput import seconds_per_step


def raw_images_per_s(loaded: LoadedTeacher, images: np.ndarray, batch_size: int, device: torch.device) -> float:
    """The teacher's forward alone over pre-rendered, pre-normalised batches on the device."""
    teacher = loaded.module.to(device)
    batches = [normalize_batch(torch.from_numpy(images[i:i + batch_size]).to(device), loaded.mean, loaded.std)
               for i in range(0, len(images), batch_size)]
    with torch.inference_mode(), autocast(device):
        teacher(batches[0])  # warm-up
        start = time.perf_counter()
        for batch in batches:
            teacher(batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
    return len(images) / (time.perf_counter() - start)


def cache_ratio(tmp: Path, arch: str, frames: int, views: int, batch_size: int, device: torch.device) -> dict:
    config = synthesize(tmp / "cache-data", domains=1, frames=frames, size=112, seed=0, progress=False)
    source = open_source(load_registry(config).dataset("alpha"))
    checkpoint = tmp / "teacher.pt"
    torch.save(openai_state_dict(random_clip(arch)), checkpoint)
    loaded = load_teacher("clip", TeacherOptions(checkpoint))
    settings = ViewSettings(views, 0, True)
    rows = source.table.rows_in_splits(("train", "val", "test"))
    images = []
    for row in rows:
        image = source.read_image(int(row))
        images.append(resize_uint8(image, loaded.input_size))
        images += [apply_view(image, p, loaded.input_size) for p in draw_views(source.table.frame_id[row], settings)]
    images = np.stack(images)
    options = CacheOptions(batch_size=batch_size, device=str(device), progress=False, workers=0,
                           chunk_rows=batch_size, views=settings)
    # Raw forward timed before and after the job, and averaged: on a shared machine the load drifts.
    before = raw_images_per_s(loaded, images, batch_size, device)
    report = run_cache(source, loaded, str(tmp / "throughput.zarr"), options)
    after = raw_images_per_s(loaded, images, batch_size, device)
    job = report.frames_computed * (views + 1) / report.seconds
    return {"arch": loaded.fingerprint["arch"], "images": len(images), "raw": (before + after) / 2, "job": job}


def bytes_per_frame(path: str, dataset: str) -> dict:
    store = open_store(path)
    group = store.dataset(dataset)
    rows = int(group.attrs[layout.ROWS_ATTR])
    single = [name for name in store.targets]
    per_view = [layout.view_array(name) for name in store.targets]
    raw_single = sum(spec.bytes_per_frame for name, spec in store.arrays.items() if name in single)
    raw_views = sum(spec.bytes_per_frame for name, spec in store.arrays.items() if name in per_view)
    stored = {name: group[name].nbytes_stored() / rows for name in [*single, *per_view, layout.VIEW_PARAMS]}
    return {"raw_single": raw_single, "raw_views": raw_views, "stored_single": sum(stored[n] for n in single),
            "stored_views": sum(stored[n] for n in per_view), "stored_params": stored[layout.VIEW_PARAMS]}


def consistency(store_path: str, source, loaded: LoadedTeacher, count: int, seed: int = 0) -> dict:
    """Cosines between the cached feature a draw trains on and the teacher on the view the student sees."""
    store = open_store(store_path)
    group = store.dataset(source.name)
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(int(group.attrs[layout.ROWS_ATTR]), size=count, replace=False))
    ids = read_strings(group[layout.FRAME_ID])[picked]
    row_of = {str(f): i for i, f in enumerate(source.table.frame_id)}
    images = [source.read_image(row_of[str(i)]) for i in ids]
    views = rng.integers(store.views.count, size=count)
    stored_params = group[layout.VIEW_PARAMS][:][picked, views]
    # Without views the student sees its own random augmentation: a draw of the same ranges, other seed.
    random_params = np.stack([draw_views(f"student/{i}", ViewSettings(1, seed + 1, True))[0] for i in ids])

    def teacher_on(params: np.ndarray) -> np.ndarray:
        pixels = np.stack([apply_view(image, p, loaded.input_size) for image, p in zip(images, params)])
        with torch.inference_mode():
            return loaded.module(normalize_batch(torch.from_numpy(pixels), loaded.mean, loaded.std))[
                layout.FEATURE].float().numpy()

    def cosine(a, b) -> np.ndarray:
        a, b = a.astype(np.float64), b.astype(np.float64)
        return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)

    with_views = cosine(group[layout.view_array(layout.FEATURE)][:][picked, views], teacher_on(stored_params))
    without = cosine(group[layout.FEATURE][:][picked], teacher_on(random_params))
    return {"with_mean": with_views.mean(), "with_min": with_views.min(), "without_mean": without.mean(),
            "without_min": without.min(), "frames": count}


def train_options(config: Path, store: str, seed: int, views: bool, **overrides) -> TrainOptions:
    return TrainOptions.for_recipe("vlmkd", protocol="views-bench", sources=["alpha", "beta"], target="gamma",
                                   config=str(config), store=store, seed=seed, views=views, workers=0,
                                   device="cpu", **overrides)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--arch", default="ViT-B-16")
    parser.add_argument("--frames", type=int, default=36, help="frames of the cache-throughput part (>= 36)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--domain-frames", type=int, default=120, help="frames per synthetic domain (parts 2-5)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--skip-cache", action="store_true", help="skip part 1 (the ViT-B/16 forward on CPU)")
    parser.add_argument("--only-cache", action="store_true", help="run part 1 only")
    args = parser.parse_args()
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device           {name}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if not args.skip_cache:
            c = cache_ratio(tmp, args.arch, args.frames, args.views, args.batch_size, device)
            print(f"[1] cache job    {c['arch']}, K={args.views}, {c['images']} images: raw forward "
                  f"{c['raw']:.1f} img/s, job {c['job']:.1f} img/s, ratio {c['job'] / c['raw']:.3f} (goal >= 0.9)")
        if args.only_cache:
            return
        config = synthesize(tmp / "data", domains=3, frames=args.domain_frames, size=64, seed=0, progress=False)
        registry = load_registry(config)
        checkpoint = tmp / "tiny-teacher.pt"
        finetune_teacher(config, ["alpha", "beta"], checkpoint, arch=TINY_ARCH, epochs=3, batch_size=32,
                         device="cpu", progress=False, seed=0)
        loaded = load_teacher("flip-mcl", TeacherOptions(checkpoint))
        store = str(tmp / "views.zarr")
        for dataset in ("alpha", "beta", "gamma"):
            run_cache(open_source(registry.dataset(dataset)), loaded, store,
                      CacheOptions(batch_size=64, chunk_rows=64, device="cpu", progress=False, workers=0,
                                   views=ViewSettings(args.views, 0, True)))
        b = bytes_per_frame(store, "alpha")
        print(f"[2] bytes/frame  one view {b['raw_single']} B raw / {b['stored_single']:.0f} B stored; K={args.views} "
              f"views {b['raw_views']} B raw ({b['raw_views'] / b['raw_single']:.3f} x) / {b['stored_views']:.0f} B "
              f"stored ({b['stored_views'] / b['stored_single']:.3f} x, goal {args.views} x within 5 %); view "
              f"parameters {b['stored_params']:.0f} B stored")
        steps = {}
        for views in (False, True):
            trainer = Trainer(registry, train_options(config, store, 0, views, batch_size=32), tmp / f"step{views}",
                              progress=False)
            trainer._build(lambda _msg: None)
            seconds_per_step(trainer, 2)  # warm-up
            steps[views] = seconds_per_step(trainer, args.steps)
        print(f"[3] student step without views {1e3 * steps[False]:.1f} ms, with views {1e3 * steps[True]:.1f} ms: "
              f"ratio {steps[True] / steps[False]:.3f} (goal <= 1.15)")
        k = consistency(store, open_source(registry.dataset("alpha")), loaded, min(64, args.domain_frames))
        print(f"[4] cosine(cached feature, teacher on the student's view) over {k['frames']} frames: with views "
              f"mean {k['with_mean']:.5f} min {k['with_min']:.5f}; without views mean {k['without_mean']:.4f} "
              f"min {k['without_min']:.4f}")
        seeds = [int(s) for s in args.seeds.split(",")]
        for views in (False, True):
            acer = []
            for seed in seeds:
                options = train_options(config, store, seed, views, epochs=args.epochs, batch_size=32,
                                        max_draws=10_000, warmup_epochs=0)
                metrics = Trainer(registry, options, tmp / f"run-{views}-{seed}", progress=False).run()
                acer.append(100 * metrics["at_val"]["acer"])
            print(f"[5] held-out gamma ACER {'with' if views else 'without'} views: {np.mean(acer):.2f} ± "
                  f"{np.std(acer):.2f} % over seeds {args.seeds} ({', '.join(f'{a:.2f}' for a in acer)})")


if __name__ == "__main__":
    main()
