"""The crop policy as data: how a face box becomes the student's input, recorded wherever crops are made or used.

A policy travels as a JSON object (``to_json``): pack attrs (``crop_policy``), student checkpoints and the
metadata of every exported model, so ``fasd predict`` (and a phone app) crop full frames exactly as the
student's training crops were made. Packs written before policies were data hold a free-text description;
``policy_from_json`` reads those as None (no detector policy: their frames are already crops).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from fasd.constants import STUDENT_INPUT_SIZE
from fasd.errors import FasdError, warn

POLICY_KIND = "face-detector-crop"  # the "kind" field that marks a structured policy
DEFAULT_DETECTOR = "haar"  # embedded in opencv-python-headless 4.x: nothing to download (docs/faces.md)
DEFAULT_CROP_SCALE = 1.4  # square side = 1.4 x the face box side: ingest's default margin of 0.2 on each side
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos")
DEFAULT_INTERPOLATION = "bicubic"  # PIL bicubic: what every other ingest layout resizes with


@dataclass(frozen=True)
class CropPolicy:
    """Detect with ``detector``, keep the largest face, cut a box ``scale`` x the face box around its centre (a
    square of side scale x max(w, h) when ``square``, else scale x w by scale x h, stretched to a square), rotate it
    so the eyes are level when ``align_eyes`` and the detector gives eye landmarks, pad outside the frame with
    black, resize to ``size`` x ``size`` with ``interpolation``."""

    detector: str = DEFAULT_DETECTOR
    scale: float = DEFAULT_CROP_SCALE
    square: bool = True
    size: int = STUDENT_INPUT_SIZE
    interpolation: str = DEFAULT_INTERPOLATION
    align_eyes: bool = False

    def __post_init__(self) -> None:
        if not (isinstance(self.scale, (int, float)) and math.isfinite(self.scale) and self.scale > 0):
            raise FasdError(f"--crop-scale must be a positive number (the crop side / the face box side), "
                            f"got {self.scale}")
        if not isinstance(self.size, int) or self.size < 8:
            raise FasdError(f"--size must be at least 8 pixels, got {self.size}")
        if self.interpolation not in INTERPOLATIONS:
            raise FasdError(f"crop interpolation '{self.interpolation}': use one of {', '.join(INTERPOLATIONS)}")

    def with_detector(self, detector: str) -> CropPolicy:
        return replace(self, detector=detector)

    def to_json(self) -> dict[str, Any]:
        return {"kind": POLICY_KIND, **asdict(self)}

    def describe(self) -> str:
        shape = "square of side max(w, h)" if self.square else "box of w x h (stretched to a square)"
        return (f"{self.detector} detector, largest face; {shape} x {self.scale:g} around the box centre"
                f"{', eyes levelled' if self.align_eyes else ''}; black padding outside the frame; "
                f"{self.interpolation} resize to {self.size}x{self.size}")


def policy_from_json(value: Any) -> CropPolicy | None:
    """A CropPolicy from its JSON object (or the object's text); None for a free-text description (packs of
    earlier fasd versions, annotation-based ingest layouts) or anything that is not a structured policy."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if not isinstance(value, dict) or value.get("kind") != POLICY_KIND:
        return None
    known = {field.name for field in fields(CropPolicy)}
    try:
        return CropPolicy(**{key: item for key, item in value.items() if key in known})
    except (TypeError, FasdError):
        return None


def policy_text(policy: CropPolicy | str) -> str:
    """What a pack's ``crop_policy`` attribute holds: a policy's JSON text, or a free-text description as is."""
    return policy if isinstance(policy, str) else json.dumps(policy.to_json(), sort_keys=True)


def shared_policy(policies: dict[str, CropPolicy | None]) -> CropPolicy | None:
    """The one policy every training source's frames were cropped by (``{source name: policy}``); None, with a
    warning when some sources have one, when they differ or some were cropped another way: a student trained on
    mixed crops has no single policy to deploy with."""
    distinct = set(policies.values())
    if len(distinct) == 1:
        return distinct.pop()
    if distinct != {None}:
        named = ", ".join(f"{name}: {policy.describe() if policy else 'not by a detector'}"
                          for name, policy in policies.items())
        warn(f"the training sources were cropped differently ({named}); the checkpoint records no crop policy, "
             "so fasd predict scores inputs as crops unless --detector is given")
    return None
