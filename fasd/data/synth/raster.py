"""Raster primitives of the renderer, vectorised over a block of frames.

Arrays are channel-first, (B, 3, H, W), single-channel maps (B, 1, H, W): numpy broadcasts per-frame
colours over a contiguous last axis far faster than over a trailing axis of 3.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image

from fasd.data.synth.domains import REFERENCE_SIZE


class Grid:
    """Pixel-centre coordinates X (1, 1, 1, W) and Y (1, 1, H, 1) in [-1, 1]."""

    def __init__(self, size: int):
        axis = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
        self.X, self.Y = axis.reshape(1, 1, 1, size), axis.reshape(1, 1, size, 1)
        self.pixel = REFERENCE_SIZE / size  # reference pixels per pixel


def col(values) -> np.ndarray:
    """Per-frame scalars (B,) -> (B, 1, 1, 1) and colours (B, 3) -> (B, 3, 1, 1)."""
    values = np.asarray(values, dtype=np.float32)
    return values.reshape(len(values), -1, 1, 1)


def rgb(red: float, green: float, blue: float) -> np.ndarray:
    return np.array([red, green, blue], dtype=np.float32).reshape(3, 1, 1)


def soft(distance: np.ndarray, width: float) -> np.ndarray:
    """Anti-aliased inside mask: 1 where distance >> 0, 0 where distance << 0."""
    mask = distance / width
    mask += 0.5
    return np.clip(mask, 0, 1, out=mask)


def paint(image: np.ndarray, mask: np.ndarray, colour) -> np.ndarray:
    """Blend ``colour`` over ``image`` where ``mask`` is 1 (in place on a fresh array: page faults of new
    large arrays cost more than the arithmetic)."""
    blended = image - colour
    blended *= mask
    np.subtract(image, blended, out=blended)
    return blended



def gaussian_blur(image: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Separable Gaussian blur of (B, C, H, W) with one sigma (pixels) per frame."""
    radius = max(1, math.ceil(3 * float(sigma.max())))
    taps = np.arange(-radius, radius + 1, dtype=np.float32)
    weights = np.exp(-0.5 * (taps / np.maximum(sigma, 1e-3).astype(np.float32)[:, None]) ** 2)
    weights /= weights.sum(axis=1, keepdims=True)
    height, width = image.shape[2:]
    padded = np.pad(image, [(0, 0), (0, 0), (radius, radius), (0, 0)], mode="edge")
    image = sum(col(weights[:, k]) * padded[:, :, k:k + height] for k in range(len(taps)))
    padded = np.pad(image, [(0, 0), (0, 0), (0, 0), (radius, radius)], mode="edge")
    return sum(col(weights[:, k]) * padded[:, :, :, k:k + width] for k in range(len(taps)))


def jpeg(frame: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"))

