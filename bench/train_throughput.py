"""Training step cost per recipe: CE-only vs cached distillation vs distillation with the teacher run online.

Goals (DESIGN.md): a cached-distillation step costs <= 1.15 x the same recipe's CE-only step, and is >= 20 x
faster than distilling with the teacher run online. All three use the real trainer step (data loading,
augmentation, forward, loss, backward, AdamW) on the same synthetic frames and batch size; "online" adds the
teacher forward on the batch (resized to the teacher's 224 px, normalised its way) to every step. The cached
targets are random values of the recipe's target shapes written straight into a real store (the step's cost
depends on their shapes, not on which teacher produced them):
  vlmkd   CLIP ViT-B/16 teacher (512-d unit feature + logits) -> MobileNetV3-Small at 112 px
  hatfas  DeiT-Base teacher (logits + CLS tokens of blocks 4, 6, 8) -> DeiT-Tiny at 224 px

    python bench/train_throughput.py [--recipe vlmkd|hatfas] [--steps N] [--online-steps N] [--batch-size N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from fasd.config import load_registry
from fasd.constants import IMAGENET_MEAN, IMAGENET_STD
from fasd.data.open_source import open_source
from fasd.data.synth import synthesize
from fasd.student_train.run_config import TrainOptions
from fasd.student_train.trainer import Trainer
from fasd.teacher_cache.arch import openai_state_dict, random_clip
from fasd.teacher_cache.registry import LoadedTeacher, TeacherOptions, load_teacher
from fasd.vit_layers import build_timm_vit
from synthetic_targets import write_random_targets


def seconds_per_step(trainer: Trainer, steps: int) -> float:
    """Time ``steps`` optimiser steps of the real training epoch, from the start of the second step."""
    trainer.draws = (steps + 1) * trainer.options.batch_size
    original = trainer._loss
    starts: list[float] = []

    def timed_loss(*args, **kwargs):
        starts.append(time.perf_counter())
        return original(*args, **kwargs)

    trainer._loss = timed_loss
    result = trainer._train_epoch(0)
    elapsed = time.perf_counter() - starts[1]
    trainer._loss = original
    return elapsed / (result["steps"] - 1)


def online_teacher_loss(trainer: Trainer, loaded: LoadedTeacher) -> callable:
    """Wrap the trainer's loss so each step first runs the teacher on the batch (online distillation): the
    student's ImageNet-normalised images are un-normalised, resized to the teacher's input and normalised with
    the teacher's own statistics; its outputs replace the cached targets."""
    original = trainer._loss
    imagenet_mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    imagenet_std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    mean, std = torch.tensor(loaded.mean).view(1, 3, 1, 1), torch.tensor(loaded.std).view(1, 3, 1, 1)

    def loss(batch):
        images, labels, domains, cached = batch
        pixels = images * imagenet_std + imagenet_mean
        pixels = F.interpolate(pixels, size=loaded.input_size, mode="bicubic", align_corners=False)
        with torch.inference_mode():
            outputs = loaded.module((pixels - mean) / std)
        return original((images, labels, domains, {name: outputs[name].float() for name in cached}))

    return loss


def clip_teacher(tmp: Path, arch: str = "ViT-B-16") -> LoadedTeacher:
    """A random CLIP (ViT-B/16: 512-d features, as the store's), the vlmkd teacher."""
    checkpoint = tmp / "clip.pt"
    torch.save(openai_state_dict(random_clip(arch)), checkpoint)
    return load_teacher("clip", TeacherOptions(checkpoint))


def deit_teacher(tmp: Path, arch: str = "deit_base_patch16_224") -> LoadedTeacher:
    """A random DeiT (Base: the hatfas teacher) with a 2-way head and CLS taps at blocks 4, 6, 8."""
    checkpoint = tmp / "deit.pth"
    torch.save({"model": build_timm_vit(arch).state_dict()}, checkpoint)
    return load_teacher("vit", TeacherOptions(checkpoint, arch=arch, layers=(4, 6, 8)))


# recipe -> (online teacher, default steps, online steps, batch size): hatfas' 224 px ViTs are ~40x the work.
RECIPE_BENCH = {"vlmkd": (clip_teacher, 20, 3, 64), "hatfas": (deit_teacher, 4, 2, 16)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="vlmkd", choices=sorted(RECIPE_BENCH))
    parser.add_argument("--steps", type=int, help="timed cached and CE-only steps (default: vlmkd 20, hatfas 4)")
    parser.add_argument("--online-steps", type=int, help="timed online steps (default: vlmkd 3, hatfas 2)")
    parser.add_argument("--batch-size", type=int, help="frames per step (default: vlmkd 64, hatfas 16)")
    parser.add_argument("--frames", type=int, default=2400, help="synthetic frames per domain")
    args = parser.parse_args()
    make_teacher, steps, online_steps, batch_size = RECIPE_BENCH[args.recipe]
    steps, online_steps = args.steps or steps, args.online_steps or online_steps
    batch_size = args.batch_size or batch_size
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        config = synthesize(tmp / "data", domains=2, frames=args.frames, size=112, seed=0, progress=False)
        registry = load_registry(config)
        loaded = make_teacher(tmp)
        write_random_targets(str(tmp / "t.zarr"), [open_source(registry.dataset("alpha"))], loaded.fingerprint)
        common = dict(protocol="alpha-to-beta", sources=["alpha"], target="beta", config=str(config),
                      store=str(tmp / "t.zarr"), batch_size=batch_size, epochs=1, warmup_epochs=0)
        ce = Trainer(registry, TrainOptions.for_recipe(args.recipe, **common, no_teacher=True), tmp / "ce",
                     progress=False)
        cached = Trainer(registry, TrainOptions.for_recipe(args.recipe, **common), tmp / "cached", progress=False)
        for trainer in (ce, cached):
            trainer._build(lambda _msg: None)
        ce_s = seconds_per_step(ce, steps)
        cached_s = seconds_per_step(cached, steps)
        cached._loss = online_teacher_loss(cached, loaded)
        online_s = seconds_per_step(cached, online_steps)
    print_report(args.recipe, batch_size, loaded, cached.criterion.needed_targets, (ce_s, cached_s, online_s))


def print_report(recipe: str, batch_size: int, loaded: LoadedTeacher, targets: tuple[str, ...],
                 seconds: tuple[float, float, float], note: str = "") -> None:
    """The three step times (CE only, cached, online) and the two ratios against their goals."""
    ce_s, cached_s, online_s = seconds
    per_frame = sum(loaded.targets[name].bytes_per_frame for name in targets)
    print(f"CPU, {torch.get_num_threads()} threads; recipe {recipe}; batch {batch_size}; teacher "
          f"{loaded.fingerprint['arch']} (random weights)")
    print(f"targets the recipe reads: {', '.join(targets)} = {per_frame} B/frame uncompressed{note}")
    print(f"CE only              {1 / ce_s:7.2f} steps/s  ({ce_s * 1000:8.1f} ms/step)")
    print(f"cached distillation  {1 / cached_s:7.2f} steps/s  ({cached_s * 1000:8.1f} ms/step)")
    print(f"online distillation  {1 / online_s:7.3f} steps/s  ({online_s * 1000:8.1f} ms/step)")
    print(f"cached / CE-only step time   {cached_s / ce_s:6.3f}   (goal <= 1.15)")
    print(f"online / cached step time    {online_s / cached_s:6.1f}   (goal >= 20)")


if __name__ == "__main__":
    main()
