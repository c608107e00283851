"""The student image stream: uint8 H x W x 3 numpy array -> ImageNet-normalised 3 x size x size."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torchvision.transforms import v2

from fasd.constants import IMAGENET_MEAN, IMAGENET_STD, STUDENT_INPUT_SIZE
from fasd.mixing import apply_mix
from fasd.views import CROP_RATIO, CROP_SCALE, FLIP_PROBABILITY, JITTER, apply_view

StudentTransform = Callable[[np.ndarray], torch.Tensor]
# (frame, one stored view's parameters, its mixing partner or None) -> the student's input: the view replayed at
# the student's size. The partner is (partner frame, the partner's view parameters, the mixing row of
# fasd.mixing.MIX_COLUMNS).
ViewReplay = Callable[[np.ndarray, np.ndarray, "tuple[np.ndarray, np.ndarray, np.ndarray] | None"], torch.Tensor]


def _to_float_normalised() -> list[v2.Transform]:
    return [
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD)),
        v2.ToPureTensor(),
    ]


def train_transform(size: int = STUDENT_INPUT_SIZE) -> StudentTransform:
    """Random resized crop (scale 0.6-1), colour jitter, horizontal flip, ImageNet normalisation.

    No hue jitter: it costs two thirds of the whole augmentation on CPU (an RGB<->HSV round trip)
    while brightness, contrast and saturation already vary the colour.
    """
    return v2.Compose([
        v2.ToImage(),
        v2.RandomResizedCrop(size, scale=CROP_SCALE, ratio=CROP_RATIO, antialias=True),
        v2.ColorJitter(brightness=JITTER, contrast=JITTER, saturation=JITTER),
        v2.RandomHorizontalFlip(FLIP_PROBABILITY),
        *_to_float_normalised(),
    ])


def eval_transform(size: int = STUDENT_INPUT_SIZE) -> StudentTransform:
    """Plain resize to size x size (no crop, no randomness), ImageNet normalisation."""
    return v2.Compose([
        v2.ToImage(),
        v2.Resize((size, size), antialias=True),
        *_to_float_normalised(),
    ])


def view_transform(size: int = STUDENT_INPUT_SIZE) -> ViewReplay:
    """A stored view (fasd.views) replayed at ``size``: the same crop, flip and jitter the teacher saw, then
    ImageNet normalisation; no other randomness."""
    normalise = v2.Compose([v2.ToImage(), *_to_float_normalised()])

    def replay(image: np.ndarray, params: np.ndarray,
               partner: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> torch.Tensor:
        view = apply_view(image, params, size)
        if partner is not None:  # a mixed view: the partner's view mixed in as the cache job did (fasd.mixing)
            view = apply_mix(view, apply_view(partner[0], partner[1], size), partner[2])
        return normalise(view)
    return replay
