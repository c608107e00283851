"""Training step cost of the mmda recipe: CE-only vs cached distillation vs the MMDA teacher run online.

The same measurement as bench/train_throughput.py (the real trainer step: loading every modality, the shared
augmentation, the three-encoder student's forward, the loss, backward, AdamW) for ``--recipe mmda``: the
multimodal student (one MobileNetV3-Small per modality at 112 px) on synthetic RGB + depth + IR frames. The
cached targets (logits, 512-d unit feature) are random values written into a real store with the paper's
24 + 24 caption embeddings beside them (text/captions, what the rs2 term reads); "online" runs a random MMDA
teacher around CLIP ViT-B/16 (MD2A, U-DSA depth 7) on the batch's three modalities at every step.

    python bench/mmda_throughput.py [--steps N] [--online-steps N] [--batch-size N] [--frames N]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import zarr

from fasd.config import load_registry
from fasd.constants import IMAGENET_MEAN, IMAGENET_STD, MODALITIES
from fasd.data.open_source import open_source
from fasd.data.synth import synthesize
from fasd.store_schema import layout
from fasd.student_train.run_config import TrainOptions
from fasd.student_train.trainer import Trainer
from fasd.teacher_cache.arch import random_clip
from fasd.teacher_cache.mmda.captions import default_captions
from fasd.teacher_cache.mmda.finetune import save_mmda_checkpoint
from fasd.teacher_cache.mmda.kind import CAPTION_LABELS, CAPTIONS
from fasd.teacher_cache.mmda.model import build_mmda_teacher
from fasd.teacher_cache.registry import LoadedTeacher, TeacherOptions, load_teacher
from synthetic_targets import write_random_targets
from train_throughput import print_report, seconds_per_step


def mmda_teacher(tmp: Path, arch: str = "ViT-B-16") -> LoadedTeacher:
    """A random MMDA teacher around CLIP ``arch`` (ViT-B/16: the paper's backbone), as cache-teacher loads it."""
    checkpoint = tmp / "mmda.pt"
    save_mmda_checkpoint(build_mmda_teacher(random_clip(arch), default_captions()), checkpoint, 0)
    return load_teacher("mmda", TeacherOptions(checkpoint))


def mmda_store(store: str, registry, loaded: LoadedTeacher) -> str:
    """A store of random targets of ``loaded``'s shapes for alpha, with its caption embeddings (what rs2 reads)."""
    write_random_targets(store, [open_source(registry.dataset("alpha"))], loaded.fingerprint)
    root = zarr.open_group(store, mode="a")
    for name in (CAPTIONS, CAPTION_LABELS):
        values = np.asarray(loaded.texts[name])
        root.create_array(f"{layout.TEXT_GROUP}/{name}", shape=values.shape, dtype=values.dtype)[:] = values
    return store


def online_loss(trainer: Trainer, loaded: LoadedTeacher):
    """Each step first runs the teacher on the batch's modalities (un-normalised from ImageNet statistics, resized
    to the teacher's input, normalised its way); its outputs replace the cached targets."""
    original = trainer._loss
    imagenet_mean, imagenet_std = (torch.tensor(v).view(1, 3, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD))
    mean, std = torch.tensor(loaded.mean).view(1, 3, 1, 1), torch.tensor(loaded.std).view(1, 3, 1, 1)

    def loss(batch):
        images, labels, domains, cached = batch
        teacher_images = {}
        for index, name in enumerate(MODALITIES):
            pixels = images[:, index] * imagenet_std + imagenet_mean
            pixels = F.interpolate(pixels, size=loaded.input_size, mode="bicubic", align_corners=False)
            teacher_images[name] = (pixels - mean) / std
        with torch.inference_mode():
            outputs = loaded.module(teacher_images)
        return original((images, labels, domains, {name: outputs[name].float() for name in cached}))

    return loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="timed cached and CE-only steps")
    parser.add_argument("--online-steps", type=int, default=2, help="timed online steps")
    parser.add_argument("--batch-size", type=int, default=32, help="frames per step")
    parser.add_argument("--frames", type=int, default=800, help="synthetic frames per domain")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        config = synthesize(tmp / "data", domains=2, frames=args.frames, size=112, seed=0, progress=False,
                            modalities=MODALITIES)
        registry = load_registry(config)
        loaded = mmda_teacher(tmp)
        store = mmda_store(str(tmp / "t.zarr"), registry, loaded)
        common = dict(protocol="alpha-to-beta", sources=["alpha"], target="beta", config=str(config), store=store,
                      batch_size=args.batch_size, epochs=1, warmup_epochs=0, workers=0)
        ce = Trainer(registry, TrainOptions.for_recipe("mmda", **common, no_teacher=True), tmp / "ce", progress=False)
        cached = Trainer(registry, TrainOptions.for_recipe("mmda", **common), tmp / "cached", progress=False)
        for trainer in (ce, cached):
            trainer._build(lambda _msg: None)
        ce_s = seconds_per_step(ce, args.steps)
        cached_s = seconds_per_step(cached, args.steps)
        cached._loss = online_loss(cached, loaded)
        online_s = seconds_per_step(cached, args.online_steps)
    print_report("mmda", args.batch_size, loaded, cached.criterion.needed_targets, (ce_s, cached_s, online_s),
                 note=", plus text/captions once per store")

if __name__ == "__main__":
    main()
