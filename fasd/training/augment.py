"""Augmentation policies: the named training-side settings a recipe trains with (`fasd train --augment NAME`).

A policy is data plus builders of timm's / torchvision's own objects (no hand-written copies):

- the student's train and evaluation transforms (``None``: the student stream's own, fasd.training.transforms
  or fasd.training.modalities);
- Mixup / CutMix and label smoothing (``timm.data.Mixup``; the mixed targets train through
  ``timm.loss.SoftTargetCrossEntropy``, see fasd.student_train.losses);
- model EMA (``timm.utils.ModelEmaV3``), repeated-augmentation sampling, gradient clipping and the floor of the
  cosine schedule.

``fasd``: fasd 0.1's augmentation (random resized crop 0.6-1, colour jitter, flip; plain resize at evaluation;
grad-norm clipping at 1.0), what the vlmkd and mmda recipes train with. ``deit``: HaTFAS' released main.py
(DeiT's recipe): RandAugment rand-m9-mstd0.5-inc1, RandomResizedCrop scale 0.08-1 bicubic, random erasing 0.25
(pixel mode), Mixup 0.8 / CutMix 1.0 (switch 0.5, per batch) with label smoothing 0.1, model EMA 0.99996,
3 repeated augmentations, evaluation by resize int(256/224 * S) + centre crop S (bicubic; S = the student's input
side, so 256 -> 224 at 224 px and 128 -> 112 at 112 px, the rule of HaTFAS' datasets.py), no gradient clipping,
cosine to min lr 1e-5. docs/fidelity.md lists where fasd still departs from that code. Repeated augmentation is
fasd.training.sampler.RepeatedDraws.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fasd.constants import IMAGENET_MEAN, IMAGENET_STD
from fasd.registry import Registry

if TYPE_CHECKING:  # torch and timm load only when a policy builds something (`fasd --help` stays fast)
    import numpy as np
    import torch

StudentTransform = Callable[["np.ndarray"], "torch.Tensor"]

# HaTFAS' main.py (DeiT) settings, named once: the deit policy's defaults and the issue's acceptance values.
DEIT_RANDAUGMENT = "rand-m9-mstd0.5-inc1"
DEIT_RE_PROB = 0.25
DEIT_SCALE = (0.08, 1.0)
DEIT_INTERPOLATION = "bicubic"
DEIT_EVAL_RESIZE = 256 / 224  # resize side = int(DEIT_EVAL_RESIZE * input side), then the centre crop


@dataclass(frozen=True)
class AugmentPolicy:
    """One registered policy. The numbers are the defaults of `fasd train`'s flags of the same names."""

    name: str
    help: str
    train: Callable[[int], StudentTransform] | None = None  # input side -> transform; None: the stream's own
    eval: Callable[[int], StudentTransform] | None = None
    mixup: float = 0.0  # Mixup alpha (0: off)
    cutmix: float = 0.0  # CutMix alpha (0: off)
    smoothing: float = 0.0  # label smoothing of the (mixed) one-hot targets
    model_ema: float = 0.0  # EMA decay of the student's weights (0: no EMA)
    repeated_aug: int = 0  # each drawn frame taken this many times in a row (0 or 1: off)
    clip_grad: float = 1.0  # gradient-norm clipping (0: none)
    min_lr: float = 0.0  # the cosine schedule's floor

    def defaults(self) -> dict[str, float | int]:
        """The flag defaults this policy sets (TrainOptions fields of the same names)."""
        return {"mixup": self.mixup, "cutmix": self.cutmix, "smoothing": self.smoothing,
                "model_ema": self.model_ema, "repeated_aug": self.repeated_aug, "clip_grad": self.clip_grad,
                "min_lr": self.min_lr}


POLICIES: Registry[AugmentPolicy] = Registry("--augment")


def policy(name: str) -> AugmentPolicy:
    return POLICIES.get(name)


def _posterize(img, bits_to_keep: int, **kwargs):
    """timm's posterize op, keeping 0 bits as the black image older Pillow made of it: at magnitude 10,
    rand-...-inc1 asks for 0 bits, which Pillow >= 11 refuses (HaTFAS trained with a Pillow that accepted it)."""
    from PIL import Image
    from timm.data import auto_augment

    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)
    return auto_augment.posterize(img, bits_to_keep, **kwargs)


def deit_train_transform(size: int) -> StudentTransform:
    """timm's create_transform as HaTFAS' datasets.py calls it (colour jitter is off under RandAugment, as in
    timm), taking the stream's uint8 (H, W, 3) frames."""
    from PIL import Image
    from timm.data import auto_augment, create_transform

    for name in ("Posterize", "PosterizeIncreasing", "PosterizeOriginal"):
        auto_augment.NAME_TO_OP[name] = _posterize

    transform = create_transform(size, is_training=True, scale=DEIT_SCALE, auto_augment=DEIT_RANDAUGMENT,
                                 interpolation=DEIT_INTERPOLATION, re_prob=DEIT_RE_PROB, re_mode="pixel",
                                 re_count=1, mean=IMAGENET_MEAN, std=IMAGENET_STD)

    def apply(frame: np.ndarray) -> torch.Tensor:
        return transform(Image.fromarray(frame))
    apply.timm_transform = transform  # the timm object itself (tests check it is timm's)
    return apply


def deit_eval_transform(size: int) -> StudentTransform:
    """Resize the short side to int(256/224 * size), bicubic, centre crop size, ImageNet normalisation."""
    import torch
    from torchvision.transforms import v2

    transform = v2.Compose([v2.ToImage(), v2.Resize(int(DEIT_EVAL_RESIZE * size),
                                                    interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
                            v2.CenterCrop(size), v2.ToDtype(torch.float32, scale=True),
                            v2.Normalize(list(IMAGENET_MEAN), list(IMAGENET_STD)), v2.ToPureTensor()])
    return transform


POLICIES.add("fasd", AugmentPolicy(
    "fasd", "random resized crop 0.6-1, colour jitter 0.2, flip; plain resize at evaluation; grad clip 1.0 "
    "(vlmkd, mmda)"))
POLICIES.add("deit", AugmentPolicy(
    "deit", f"HaTFAS/DeiT: RandAugment {DEIT_RANDAUGMENT}, RandomResizedCrop {DEIT_SCALE[0]}-{DEIT_SCALE[1]} "
    f"bicubic, random erasing {DEIT_RE_PROB}, Mixup/CutMix, label smoothing, model EMA, repeated augmentation; "
    "resize 256/224 x side + centre crop at evaluation; no grad clip (hatfas)",
    train=deit_train_transform, eval=deit_eval_transform, mixup=0.8, cutmix=1.0, smoothing=0.1,
    model_ema=0.99996, repeated_aug=3, clip_grad=0.0, min_lr=1e-5))


def mixer(mixup: float, cutmix: float, smoothing: float, num_classes: int = 2):
    """timm's Mixup with HaTFAS' call (prob 1, switch 0.5, one λ per batch); None when both alphas are 0."""
    if mixup <= 0 and cutmix <= 0:
        return None
    from timm.data import Mixup

    return Mixup(mixup_alpha=mixup, cutmix_alpha=cutmix, prob=1.0, switch_prob=0.5, mode="batch",
                 label_smoothing=smoothing, num_classes=num_classes)


def smoothed_targets(labels: "torch.Tensor", smoothing: float, num_classes: int = 2) -> "torch.Tensor":
    """Label-smoothed one-hot targets (timm's mixup_target at λ = 1: what a batch that is not mixed trains on)."""
    from timm.data.mixup import mixup_target

    return mixup_target(labels, num_classes, lam=1.0, smoothing=smoothing)


def model_ema(model: "torch.nn.Module", decay: float):
    """timm's ModelEmaV3 of ``model`` (None when ``decay`` is 0)."""
    if decay <= 0:
        return None
    from timm.utils import ModelEmaV3

    return ModelEmaV3(model, decay=decay)
