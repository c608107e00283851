"""The student image stream: uint8 H x W x 3 numpy array -> ImageNet-normalised 3 x size x size."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torchvision.transforms import v2

from fasd.constants import IMAGENET_MEAN, IMAGENET_STD, STUDENT_INPUT_SIZE

StudentTransform = Callable[[np.ndarray], torch.Tensor]


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
        v2.RandomResizedCrop(size, scale=(0.6, 1.0), antialias=True),
        v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2),
        v2.RandomHorizontalFlip(),
        *_to_float_normalised(),
    ])


def eval_transform(size: int = STUDENT_INPUT_SIZE) -> StudentTransform:
    """Plain resize to size x size (no crop, no randomness), ImageNet normalisation."""
    return v2.Compose([
        v2.ToImage(),
        v2.Resize((size, size), antialias=True),
        *_to_float_normalised(),
    ])
