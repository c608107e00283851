"""Decode an image file to the uint8 RGB array every frame source returns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from fasd.data.source import UnreadableFrame


def decode_image(path: str | Path) -> np.ndarray:
    """Read ``path`` as (H, W, 3) uint8 RGB; a missing, truncated or non-image file raises UnreadableFrame."""
    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise UnreadableFrame(f"{path}: {exc}") from None
