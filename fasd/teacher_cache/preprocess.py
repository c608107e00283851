"""The teacher stream: resize to the teacher's input size (bicubic, PIL), scale to [0, 1], the teacher's mean/std.

No random augmentation, so the teacher's output per frame is a fixed function of the frame and can be
cached. Resizing happens on uint8 in the loader workers; normalisation runs on the device, so only
uint8 pixels cross to the GPU.
"""

from __future__ import annotations

from collections.abc import Sequence

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
