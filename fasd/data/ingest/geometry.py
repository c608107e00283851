"""Face crop geometry shared by every ingest layout.

Every crop is a square cut from the decoded frame, then resized to ``size`` x ``size`` with PIL
bicubic (which low-pass filters when shrinking). Parts of the square that fall outside the frame
are padded with black (0, 0, 0): padding never invents face texture a spoof detector could key on.

``margin`` is the fraction of the face box side added on *each* side, so the square's side is
``face_side * (1 + 2 * margin)``; the default 0.2 gives a square 1.4 x the face box.

- Box layouts (Replay-Attack ``.face``, CelebA-Spoof ``_BB.txt``): the face box (x, y, w, h) gives
  the centre (x + w/2, y + h/2) and ``face_side = max(w, h)``.
- Eye layouts (OULU-NPU): with d the inter-ocular distance (between the eye centres), the face box
  is a square of side ``FACE_SIDE_PER_IOD * d`` (2.5 d) centred ``FACE_CENTRE_BELOW_EYES * d``
  (0.35 d) below the eye midpoint, measured perpendicular to the eye line. The square is rotated
  with the eye line (roll alignment) so the eyes are level in the crop. The eye further left in
  the image is taken as the start of the eye line whatever its label, so a crop is never upside
  down. With margin 0 the eyes land at x = 0.3 and 0.7 of the crop width, y = 0.36 of its height.
- Pre-cropped layouts (FLIP/MCIO frames): the largest centred square of the image, margin unused.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from fasd.faces.crop import cut

DEFAULT_MARGIN = 0.2
FACE_SIDE_PER_IOD = 2.5
FACE_CENTRE_BELOW_EYES = 0.35

Point = tuple[float, float]
Box = tuple[float, float, float, float]  # x, y, width, height (top-left corner)


def crop_square(image: np.ndarray, centre: Point, side: float, size: int, angle: float = 0.0) -> np.ndarray:
    """Cut the square of ``side`` pixels centred on ``centre`` whose x axis points along ``angle``
    (radians, image coordinates), pad outside the frame with black, resize to ``size``."""
    return cut(image, centre, side, side, size, angle)


def scaled_side(face_side: float, margin: float) -> float:
    return face_side * (1 + 2 * margin)


def box_crop(image: np.ndarray, box: Box, margin: float, size: int) -> np.ndarray:
    x, y, width, height = box
    return crop_square(image, (x + width / 2, y + height / 2), scaled_side(max(width, height), margin), size)


def eye_crop(image: np.ndarray, eye_a: Point, eye_b: Point, margin: float, size: int) -> np.ndarray:
    """Roll-aligned eye-anchored crop (see the module docstring); the two eyes may come in any order."""
    (xa, ya), (xb, yb) = sorted((eye_a, eye_b))
    distance = math.hypot(xb - xa, yb - ya)
    angle = math.atan2(yb - ya, xb - xa)
    below = FACE_CENTRE_BELOW_EYES * distance
    centre = ((xa + xb) / 2 - math.sin(angle) * below, (ya + yb) / 2 + math.cos(angle) * below)
    return crop_square(image, centre, scaled_side(FACE_SIDE_PER_IOD * distance, margin), size, angle)


def centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    height, width = image.shape[:2]
    return crop_square(image, (width / 2, height / 2), min(width, height), size)


def box_policy(margin: float, size: int) -> str:
    return (f"box-anchored square: centre = face box centre, side = max(w, h) * (1 + 2 * {margin:g}); "
            f"black padding outside the frame; bicubic resize to {size}x{size}")


def eye_policy(margin: float, size: int) -> str:
    return (f"eye-anchored square, roll-aligned (eyes level): centre = eye midpoint + "
            f"{FACE_CENTRE_BELOW_EYES:g} * IOD below the eye line, side = {FACE_SIDE_PER_IOD:g} * IOD * "
            f"(1 + 2 * {margin:g}); black padding outside the frame; bicubic resize to {size}x{size}")


def centre_policy(size: int) -> str:
    return f"pre-cropped frames: largest centred square, bicubic resize to {size}x{size}"


def sample_evenly(indices: Sequence[int], count: int | None) -> list[int]:
    """``count`` entries of ``indices`` spread evenly (the middle of ``count`` equal segments);
    all of them when ``count`` is None or not smaller than ``len(indices)``."""
    total = len(indices)
    if count is None or count >= total:
        return list(indices)
    return [indices[int((i + 0.5) * total / count)] for i in range(count)]
