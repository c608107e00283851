"""Mixed views: Mixup / CutMix drawn per stored view, so the cached targets are the teacher's output on the
mixed pixels the student replays (``cache-teacher --views K --mix mixup=0.8,cutmix=1.0``; DESIGN.md, "Mixed
views").

Each view of a frame may name a mixing *partner* (another store row of the same chunk and split: shards own
whole chunks, so shards and resumed runs draw the same partners, and a train frame never takes pixels of a
validation or test frame), λ and a CutMix box. Stored as ``views/mix`` (N, K, MIX) float64 with the columns
``MIX_COLUMNS``: the partner's store row (exact in float64), λ (the share of the frame's own label), and the box
as fractions of the side (height 0: Mixup, a blend). λ = 1 leaves the view unmixed.

λ and the choice between Mixup and CutMix are timm's own draws (``timm.data.Mixup`` per element, as timm
mixes; HaTFAS mixes per batch, a departure listed in docs/fidelity.md), and the box is timm's
``cutmix_bbox_and_lam`` at the teacher's input side, with λ corrected to the box's area. Both are run under a
numpy generator state seeded from (view seed, frame ID), so the draws are a fixed function of the frame.
The partner is rendered with its own view of the same index; the mixed image is rounded to uint8 (a Mixup
blend moves each pixel by at most half a grey level), so teacher and student see the same pixels.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from fasd.errors import FasdError

MIX_COLUMNS = ("partner", "lam", "cut_y0", "cut_x0", "cut_h", "cut_w")
MIX = len(MIX_COLUMNS)
MIX_DTYPE = "f8"
NO_MIX = (1.0, 0.0, 0.0, 0.0, 0.0)  # λ = 1: the view is not mixed


@dataclass(frozen=True)
class MixSettings:
    """Mixup / CutMix alphas (0: off), the chance that a view is mixed, the chance of CutMix when both are on."""

    mixup: float = 0.0
    cutmix: float = 0.0
    prob: float = 1.0
    switch_prob: float = 0.5

    @property
    def active(self) -> bool:
        return self.mixup > 0 or self.cutmix > 0

    def to_json(self) -> dict:
        return {"mixup": self.mixup, "cutmix": self.cutmix, "prob": self.prob, "switch_prob": self.switch_prob}

    @classmethod
    def from_json(cls, value: dict | None) -> "MixSettings":
        return cls(**{k: float(v) for k, v in value.items()}) if value else cls()

    @classmethod
    def parse(cls, text: str | None) -> "MixSettings":
        """``--mix mixup=0.8,cutmix=1.0[,prob=1,switch_prob=0.5]`` (empty: no mixing)."""
        if not text:
            return cls()
        values = {}
        for part in text.split(","):
            key, sep, value = part.strip().partition("=")
            key = key.strip().replace("-", "_")
            if not sep or key not in cls.__dataclass_fields__:
                raise FasdError(f"--mix takes NAME=VALUE,... with NAME in {', '.join(cls.__dataclass_fields__)}, "
                                f"got '{part.strip()}'")
            try:
                values[key] = float(value)
            except ValueError:
                raise FasdError(f"--mix {key}: '{value}' is not a number") from None
            if not (np.isfinite(values[key]) and values[key] >= 0):
                raise FasdError(f"--mix {key} must be a finite number >= 0, got {value}")
        settings = cls(**values)
        if settings.prob > 1 or settings.switch_prob > 1:
            raise FasdError("--mix prob and switch_prob are probabilities (0-1)")
        if not settings.active:
            raise FasdError("--mix needs mixup=ALPHA or cutmix=ALPHA above 0")
        return settings

    def mixer(self):
        """timm's Mixup with these settings (one λ per element)."""
        from timm.data import Mixup

        return Mixup(mixup_alpha=self.mixup, cutmix_alpha=self.cutmix, prob=self.prob,
                     switch_prob=self.switch_prob, mode="elem", label_smoothing=0.0, num_classes=2)


@contextmanager
def numpy_global_seed(rng: np.random.Generator) -> Iterator[None]:
    """numpy's global generator (which timm's mixup draws from) seeded from ``rng`` inside the block; the state
    it had is restored after it."""
    saved = np.random.get_state()
    np.random.seed(rng.integers(0, 2**32, size=4, dtype=np.uint32))
    try:
        yield
    finally:
        np.random.set_state(saved)


def draw_mix(rng: np.random.Generator, settings: MixSettings, size: int) -> tuple[float, ...]:
    """(λ, cut_y0, cut_x0, cut_h, cut_w) of one view: timm's draw of λ and of the box at ``size`` px."""
    from timm.data.mixup import cutmix_bbox_and_lam

    with numpy_global_seed(rng):
        lam, use_cutmix = settings.mixer()._params_per_elem(1)
        lam = float(lam[0])
        if lam >= 1.0:
            return NO_MIX
        if not use_cutmix[0]:
            return (lam, 0.0, 0.0, 0.0, 0.0)
        (yl, yh, xl, xh), lam = cutmix_bbox_and_lam((size, size), lam, correct_lam=True)
    return (float(lam), yl / size, xl / size, (yh - yl) / size, (xh - xl) / size)


def draw_partners(rng: np.random.Generator, candidates: np.ndarray, count: int) -> np.ndarray:
    """``count`` partners (store rows) drawn uniformly from ``candidates``."""
    return candidates[rng.integers(len(candidates), size=count)]


def partner_candidates(row: int, chunk_rows: int, splits: np.ndarray) -> np.ndarray:
    """Store rows a frame at store row ``row`` may mix with: the other rows of its chunk in its split (itself
    when it is alone there). ``splits``: the split of every store row."""
    start = row // chunk_rows * chunk_rows
    end = min(start + chunk_rows, len(splits))
    rows = np.arange(start, end)
    rows = rows[(splits[start:end] == splits[row]) & (rows != row)]
    return rows if len(rows) else np.array([row])


def apply_mix(own: np.ndarray, partner: np.ndarray, mix: np.ndarray) -> np.ndarray:
    """Two (S, S, 3) uint8 views -> the mixed (S, S, 3) uint8 view; ``mix`` is one row of MIX_COLUMNS (the
    partner column is ignored). The CutMix box in pixels is round(fraction x S), so at the teacher's side it is
    timm's box exactly."""
    lam, y0, x0, h, w = (float(v) for v in mix[1:])
    if lam >= 1.0:
        return own
    if h > 0:
        size = own.shape[0]
        top, left = round(y0 * size), round(x0 * size)
        bottom, right = top + round(h * size), left + round(w * size)
        out = own.copy()
        out[top:bottom, left:right] = partner[top:bottom, left:right]
        return out
    return np.rint(lam * own.astype(np.float64) + (1.0 - lam) * partner.astype(np.float64)).astype(np.uint8)


def mixed_soft_labels(labels: np.ndarray, partner_labels: np.ndarray, lam: np.ndarray,
                      smoothing: float) -> np.ndarray:
    """(n, 2) soft targets of mixed views: λ·smooth(y) + (1 − λ)·smooth(y_partner), as timm's mixup_target."""
    import torch
    from timm.data.mixup import one_hot

    off = smoothing / 2
    on = 1.0 - smoothing + off
    own = one_hot(torch.as_tensor(labels), 2, on, off).numpy()
    other = one_hot(torch.as_tensor(partner_labels), 2, on, off).numpy()
    lam = np.asarray(lam, dtype=np.float32)[:, None]
    return (lam * own + (1.0 - lam) * other).astype(np.float32)
