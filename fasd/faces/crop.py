"""The one function that turns a detected face into the student's input (``crop_face``), and the cut it is made of.

``cut`` is also what every ingest layout's square crops use (fasd.data.ingest.geometry.crop_square), so a crop
made by ``fasd ingest faces`` and one made by ``fasd predict`` are the same computation on the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from fasd.faces.policy import CropPolicy

PRESHRINK_ABOVE = 2  # boxes larger than this many times the output size are box-filtered down first
_RESIZE = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
           "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}
# PIL's affine transform takes nearest, bilinear or bicubic; a lanczos policy cuts with bicubic, resizes with lanczos.
_AFFINE = {**_RESIZE, "lanczos": Image.Resampling.BICUBIC}

Point = tuple[float, float]
Box = tuple[float, float, float, float]  # x, y, width, height (top-left corner), pixels of the upright image


@dataclass(frozen=True)
class Face:
    """One detection. ``landmarks``: (x, y) points in the detector's order, the first two the eyes; None when the
    detector gives none."""

    box: Box
    score: float
    landmarks: tuple[Point, ...] | None = None

    @property
    def area(self) -> float:
        return self.box[2] * self.box[3]


def largest(faces: list[Face]) -> Face | None:
    """The face with the largest box (the subject in front of the camera); None when there is none."""
    return max(faces, key=lambda face: face.area, default=None)


def cut(image: np.ndarray, centre: Point, width: float, height: float, size: int, angle: float = 0.0,
        interpolation: str = "bicubic") -> np.ndarray:
    """The ``width`` x ``height`` box centred on ``centre`` whose x axis points along ``angle`` (radians, image
    coordinates), padded with black outside the frame, resized to ``size`` x ``size``."""
    cos, sin = math.cos(angle), math.sin(angle)
    cx, cy = centre
    picture = Image.fromarray(image)
    factor = int(max(width, height) // (PRESHRINK_ABOVE * size))
    if factor > 1:
        # Box-filter the box's surroundings down first (anti-aliased and cheap) so the affine below runs on a
        # few times ``size`` pixels, not on a full-resolution box.
        reach_x = (width * abs(cos) + height * abs(sin)) / 2 + 2 * factor
        reach_y = (width * abs(sin) + height * abs(cos)) / 2 + 2 * factor
        left, top = math.floor(cx - reach_x), math.floor(cy - reach_y)
        right, bottom = math.ceil(cx + reach_x), math.ceil(cy + reach_y)
        picture = picture.crop((left, top, right, bottom)).reduce(factor)  # black outside the frame
        cx, cy, width, height = (cx - left) / factor, (cy - top) / factor, width / factor, height / factor
    width_px, height_px = max(1, round(width)), max(1, round(height))
    half_w, half_h = width_px / 2, height_px / 2
    # PIL's affine maps each output pixel to its source: source = centre + R(angle) @ (output - half).
    coefficients = (cos, -sin, cx - half_w * cos + half_h * sin, sin, cos, cy - half_w * sin - half_h * cos)
    patch = picture.transform((width_px, height_px), Image.Transform.AFFINE, coefficients,
                              resample=_AFFINE[interpolation], fillcolor=(0, 0, 0))
    return np.array(patch.resize((size, size), _RESIZE[interpolation]))  # writable: torch takes it without a warning


def eye_angle(eye_a: Point, eye_b: Point) -> float:
    """The angle of the eye line, from the eye further left in the image (so a crop is never upside down)."""
    (xa, ya), (xb, yb) = sorted((eye_a, eye_b))
    return math.atan2(yb - ya, xb - xa)


def crop_face(image: np.ndarray, face: Face, policy: CropPolicy) -> np.ndarray:
    """``policy`` applied to ``face`` of the upright RGB ``image``: the uint8 size x size x 3 model input."""
    x, y, width, height = face.box
    if policy.square:
        width = height = max(width, height)
    aligned = policy.align_eyes and face.landmarks is not None and len(face.landmarks) >= 2
    angle = eye_angle(*face.landmarks[:2]) if aligned else 0.0
    return cut(image, (x + face.box[2] / 2, y + face.box[3] / 2), policy.scale * width, policy.scale * height,
               policy.size, angle, policy.interpolation)
