"""The teacher stream: resize to the teacher's input size (bicubic, PIL), scale to [0, 1], the teacher's mean/std.

No random augmentation, so the teacher's output per frame is a fixed function of the frame and can be
cached. Normalisation runs on the device, so only uint8 pixels cross to the GPU. The resize runs either in the
loader workers (PIL) or on the device (``resize_batch``: PIL's own fixed-point bicubic as two float64 matrix
products, bit-identical to PIL), so a store is the same whichever side resized it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
from PIL import Image


def resize_uint8(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8, bicubic (as CLIP's own transform on a square face crop)."""
    if image.shape[:2] == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BICUBIC))


def normalize_batch(pixels: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(N, S, S, 3) uint8 on any device -> (N, 3, S, S) float32 normalised with ``mean``/``std``.

    (x / 255 - mean) / std is applied as one in-place multiply and subtract.
    """
    mean = torch.tensor(mean, device=pixels.device).view(1, 3, 1, 1)
    std = torch.tensor(std, device=pixels.device).view(1, 3, 1, 1)
    images = pixels.permute(0, 3, 1, 2).float()
    return images.mul_(1.0 / (255.0 * std)).sub_(mean / std)


_BITS = 22  # PIL's fixed-point precision of 8-bit resampling coefficients (32 - 8 - 2)


def _bicubic(x: np.ndarray) -> np.ndarray:
    """PIL's bicubic kernel (a = -0.5)."""
    a, x = -0.5, np.abs(x)
    return np.where(x < 1, ((a + 2) * x - (a + 3)) * x * x + 1,
                    np.where(x < 2, (((x - 5) * x + 8) * x - 4) * a, 0.0))


@lru_cache(maxsize=16)
def pil_bicubic_matrix(source: int, size: int) -> np.ndarray:
    """(size, source) int64: PIL's integer coefficients (scaled by 2**22) of a bicubic resize of one axis from
    ``source`` to ``size`` pixels, as PIL's ImagingResample computes them (support widened when reducing, weights
    normalised per output pixel, then rounded half away from zero)."""
    scale = source / size
    filter_scale = max(scale, 1.0)
    support = 2.0 * filter_scale
    matrix = np.zeros((size, source), dtype=np.int64)
    for out in range(size):
        center = (out + 0.5) * scale
        low = max(int(center - support + 0.5), 0)
        high = min(int(center + support + 0.5), source)
        weights = _bicubic((np.arange(low, high) - center + 0.5) / filter_scale)
        if weights.sum() != 0:
            weights = weights / weights.sum()
        scaled = weights * (1 << _BITS)
        matrix[out, low:high] = np.where(scaled < 0, np.trunc(scaled - 0.5), np.trunc(scaled + 0.5))
    return matrix


def resize_batch(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """(N, H, W, 3) uint8 on any device -> (N, size, size, 3) uint8, equal to ``resize_uint8`` frame by frame.

    PIL resizes horizontally, rounds and clips to 8 bits, then vertically; each pass here is one matrix product
    with PIL's integer coefficients in float64 (every partial sum is an integer below 2**53: exact), so the GPU
    gives PIL's bytes.
    """
    height, width = pixels.shape[1:3]
    if (height, width) == (size, size):
        return pixels
    images = pixels.to(torch.float64)
    half, unit = float(1 << (_BITS - 1)), float(1 << _BITS)
    if width != size:
        columns = torch.from_numpy(pil_bicubic_matrix(width, size)).to(images)
        images = torch.einsum("nhwc,sw->nhsc", images, columns).add_(half).div_(unit).floor_().clamp_(0, 255)
    if height != size:
        rows = torch.from_numpy(pil_bicubic_matrix(height, size)).to(images)
        images = torch.einsum("nhwc,sh->nswc", images, rows).add_(half).div_(unit).floor_().clamp_(0, 255)
    return images.to(torch.uint8)
