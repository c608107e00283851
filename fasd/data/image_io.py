"""Decode an image file to the uint8 RGB array every frame source returns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from fasd.data.source import UnreadableFrame


def decode_image(path: str | Path, upright: bool = False) -> np.ndarray:
    """Read ``path`` as (H, W, 3) uint8 RGB; a missing, truncated or non-image file raises UnreadableFrame.
    ``upright``: apply the EXIF orientation tag (phone cameras store pixels rotated and say so in the tag)."""
    try:
        with Image.open(path) as image:
            return np.array((ImageOps.exif_transpose(image) if upright else image).convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise UnreadableFrame(f"{path}: {exc}") from None
