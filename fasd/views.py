"""Augmentation views shared by the teacher cache and the student replay (DESIGN.md, "Views").

A *view* of a frame is one set of augmentation parameters: a crop box (fractions of the frame, so it means
the same region at any resolution), a horizontal flip and three colour-jitter factors. ``cache-teacher
--views K`` draws K views per frame and stores them as ``views/params`` (N, K, P) float32 with the columns
of ``PARAM_COLUMNS`` (a stable layout). Both sides render a view with ``apply_view``: the teacher at its
input size, the student at its own, so both see the same pixels of the frame.

The draws depend only on (view seed, frame ID): any shard, resumed run or machine draws the same views.
The ranges are the student's random training augmentation's (fasd.training.transforms uses these
constants): RandomResizedCrop scale 0.6-1 and ratio 3/4-4/3, brightness/contrast/saturation jitter 0.2, flip
with probability 1/2.

``apply_view`` applies, in this fixed order: crop + resize (PIL bicubic with antialiasing, the crop box in
sub-pixel coordinates), flip, brightness, contrast, saturation (each a blend as torchvision's
adjust_* functions, clamped to [0, 255]), then rounds to uint8.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from fasd.mixing import MIX, MixSettings, draw_mix, draw_partners

# The student's training augmentation ranges (one source of truth for both the online transform and views).
CROP_SCALE = (0.6, 1.0)  # area of the crop as a fraction of the frame's
CROP_RATIO = (3 / 4, 4 / 3)  # width / height of the crop
JITTER = 0.2  # brightness, contrast and saturation factors are drawn from [1 - JITTER, 1 + JITTER]
FLIP_PROBABILITY = 0.5

PARAM_COLUMNS = ("y0", "x0", "h", "w", "flip", "brightness", "contrast", "saturation")
PARAMS = len(PARAM_COLUMNS)
PARAMS_DTYPE = "f4"
_CROP_TRIES = 10  # as torchvision's RandomResizedCrop.get_params
# ITU-R 601-2 luma, as torchvision's rgb_to_grayscale.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class ViewSettings:
    """``count`` views per frame (0: no views), drawn with ``seed``; ``jitter`` False stores factors of 1.0;
    ``mix``: Mixup / CutMix of each view with a partner frame (fasd.mixing; inactive by default)."""

    count: int = 0
    seed: int = 0
    jitter: bool = True
    mix: MixSettings = MixSettings()

    def to_json(self) -> dict:
        # A store without mixing records what fasd 0.2 recorded (its fingerprint is unchanged).
        mix = {"mix": self.mix.to_json()} if self.mix.active else {}
        return {"count": self.count, "seed": self.seed, "jitter": self.jitter, **mix}

    @classmethod
    def from_json(cls, value: dict) -> "ViewSettings":
        return cls(int(value["count"]), int(value["seed"]), bool(value["jitter"]),
                   MixSettings.from_json(value.get("mix")))


def frame_rng(seed: int, frame_id: str) -> np.random.Generator:
    """A generator that depends only on (seed, frame ID): sha256 of the ID's UTF-8 bytes, not Python's
    per-process salted hash."""
    digest = hashlib.sha256(str(frame_id).encode("utf-8")).digest()
    words = np.frombuffer(digest, dtype="<u4").tolist()
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *words]))


def _crop_box(rng: np.random.Generator) -> tuple[float, float, float, float]:
    """(y0, x0, h, w) as fractions of the frame: RandomResizedCrop's rule on a unit square."""
    log_ratio = (math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]))
    for _ in range(_CROP_TRIES):
        area = rng.uniform(*CROP_SCALE)
        ratio = math.exp(rng.uniform(*log_ratio))
        w, h = math.sqrt(area * ratio), math.sqrt(area / ratio)
        if w <= 1.0 and h <= 1.0:
            return rng.uniform(0.0, 1.0 - h), rng.uniform(0.0, 1.0 - w), h, w
    return 0.0, 0.0, 1.0, 1.0  # torchvision's fallback for a square frame: the whole frame


def draw_views(frame_id: str, settings: ViewSettings) -> np.ndarray:
    """(K, P) float32 view parameters of one frame, columns PARAM_COLUMNS.

    The jitter factors are drawn even when ``settings.jitter`` is off, so the crops and flips do not depend
    on it.
    """
    rng = frame_rng(settings.seed, frame_id)
    out = np.empty((settings.count, PARAMS), dtype=np.float32)
    for k in range(settings.count):
        box = _crop_box(rng)
        flip = float(rng.random() < FLIP_PROBABILITY)
        factors = rng.uniform(1.0 - JITTER, 1.0 + JITTER, size=3)
        out[k] = (*box, flip, *(factors if settings.jitter else (1.0, 1.0, 1.0)))
    return out


def _blend(image: np.ndarray, factor: float, other: np.ndarray | float) -> np.ndarray:
    return np.clip(factor * image + (1.0 - factor) * other, 0.0, 255.0)


def _jitter(image: np.ndarray, brightness: float, contrast: float, saturation: float) -> np.ndarray:
    """Brightness, contrast, saturation on float pixels in [0, 255] (torchvision's adjust_* formulas)."""
    out = np.clip(image * brightness, 0.0, 255.0)
    out = _blend(out, contrast, float((out @ _LUMA).mean()))
    return _blend(out, saturation, (out @ _LUMA)[..., None])


def apply_view(image: np.ndarray, params: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 frame -> (size, size, 3) uint8: the view ``params`` (one row of PARAM_COLUMNS)."""
    y0, x0, h, w, flip, brightness, contrast, saturation = (float(v) for v in params)
    height, width = image.shape[:2]
    box = (x0 * width, y0 * height, (x0 + w) * width, (y0 + h) * height)
    out = np.asarray(Image.fromarray(image).resize((size, size), Image.BICUBIC, box=box))
    if flip >= 0.5:
        out = out[:, ::-1]
    if (brightness, contrast, saturation) != (1.0, 1.0, 1.0):
        out = np.rint(_jitter(out.astype(np.float32), brightness, contrast, saturation)).astype(np.uint8)
    return np.ascontiguousarray(out)


# The mixing draws come from their own stream (frame ID tagged), so the crops, flips and jitters of a store
# cached with --mix are those of the same store without it.
_MIX_TAG = "mix:"


def draw_mixes(frame_id: str, settings: ViewSettings, candidates: np.ndarray, size: int) -> np.ndarray:
    """(K, MIX) float64 mixing of one frame's K views (fasd.mixing.MIX_COLUMNS): partners from ``candidates``
    (store rows, fasd.mixing.partner_candidates), λ and the CutMix box drawn at ``size`` px."""
    rng = frame_rng(settings.seed, _MIX_TAG + str(frame_id))
    out = np.empty((settings.count, MIX), dtype=np.float64)
    out[:, 0] = draw_partners(rng, candidates, settings.count)
    for k in range(settings.count):
        out[k, 1:] = draw_mix(rng, settings.mix, size)
    return out


def impossible_views(params: np.ndarray) -> np.ndarray:
    """(..., P) view parameters -> (...) bool: True where no draw could give them (a crop box outside the frame
    or of no area, a flip other than 0 or 1, a non-positive or non-finite jitter factor) — a damaged store."""
    y0, x0, h, w, flip = (params[..., i] for i in range(5))
    slack = 1e-5  # float32 rounding of y0 + h
    with np.errstate(invalid="ignore"):
        box = (y0 >= 0) & (x0 >= 0) & (h > 0) & (w > 0) & (y0 + h <= 1 + slack) & (x0 + w <= 1 + slack)
        factors = (params[..., 5:PARAMS] > 0).all(axis=-1)
    return ~(box & ((flip == 0) | (flip == 1)) & factors & np.isfinite(params[..., :PARAMS]).all(axis=-1))
