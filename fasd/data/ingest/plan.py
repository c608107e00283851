"""What a layout reader hands the runner: a plan of work items, and the frames each item yields.

A layout's ``plan(root, options)`` only lists what is there (cheap, in the main process); each
item's ``load()`` does the decoding and cropping (expensive, possibly in a worker process), so
items are small picklable dataclasses. A layout registers its ``plan`` with ``register_layout``,
declaring whether it reads videos and which optional ``IngestOptions`` it accepts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from fasd.faces.policy import CropPolicy
from fasd.registry import Registry


@dataclass(frozen=True)
class IngestOptions:
    size: int
    margin: float
    frames_per_video: int | None = None  # video layouts only
    protocol: str | None = None
    lists: Path | None = None  # folder of list files
    dataset: str | None = None  # which dataset's lists
    detector: str | None = None  # faces: the registered face detector (fasd.faces.detectors)
    detector_weights: str | None = None  # faces: its weights file(s), comma-separated
    crop_scale: float | None = None  # faces: crop side / face box side


# Optional IngestOptions fields and their flags; a layout accepts only those it declares.
OPTIONAL_OPTIONS = {"protocol": "--protocol", "lists": "--lists", "dataset": "--dataset", "detector": "--detector",
                    "detector_weights": "--detector-weights", "crop_scale": "--crop-scale"}


@dataclass(frozen=True)
class Skip:
    """A video or image left out of the pack: ``reason`` is generic (it groups the summary)."""

    item: str
    reason: str
    detail: str = ""


class ItemSkipped(Exception):
    """Raised while loading: the video or image is left out of the pack for ``reason``."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail

    def at(self, item: str) -> Skip:
        return Skip(item, self.reason, self.detail)


@dataclass(frozen=True)
class FrameMeta:
    label: int
    split: str
    video_id: str
    attack_type: str


@dataclass
class Batch:
    """The frames one item produced, in pack order, and what it had to leave out.

    ``images`` are RGB; a multimodal item also gives every frame its depth and IR images and its
    (rgb, depth, ir) presence mask, in ``modalities``.
    """

    images: list[np.ndarray] = field(default_factory=list)
    frame_ids: list[str] = field(default_factory=list)
    metas: list[FrameMeta] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    modalities: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def add(self, image: np.ndarray, frame_id: str, meta: FrameMeta,
            modalities: dict[str, np.ndarray] | None = None) -> None:
        self.images.append(image)
        self.frame_ids.append(frame_id)
        self.metas.append(meta)
        for name, value in (modalities or {}).items():
            self.modalities.setdefault(name, []).append(value)


class Item(Protocol):
    name: str

    @property
    def units(self) -> int:
        """How many videos or images this item covers (progress is counted in these)."""

    def load(self) -> Batch:
        """Decode and crop; raise ItemSkipped to leave the whole item out."""


@dataclass
class Plan:
    unit: str  # "videos", "images" or "samples": what ``seen`` and ``skipped`` count
    crop_policy: str | CropPolicy  # a CropPolicy when fasd detected the faces, else a description
    items: list[Item]
    seen: int
    skipped: list[Skip] = field(default_factory=list)
    excluded: Counter[str] = field(default_factory=Counter)  # left out by design (enroll videos, protocol)
    modalities: tuple[str, ...] = ("rgb",)  # what the pack stores (PackWriter's ``modalities``)


Planner = Callable[[Path, IngestOptions], Plan]


@dataclass(frozen=True)
class Layout:
    name: str
    plan: Planner
    video: bool  # decodes videos: needs PyAV, accepts --frames-per-video
    options: frozenset[str]  # the OPTIONAL_OPTIONS it accepts


LAYOUTS: Registry[Layout] = Registry(
    "KIND", tuple(f"fasd.data.ingest.{m}" for m in ("celeba", "faces", "mcio", "mmdg", "oulu", "replay")),
    unknown="unknown dataset kind '{name}': choose one of {names}")


def register_layout(name: str, *, video: bool = False, options: tuple[str, ...] = ()) -> Callable[[Planner], Planner]:
    """Register a layout's ``plan`` under ``name`` (the ``fasd ingest KIND`` argument)."""
    unknown = set(options) - set(OPTIONAL_OPTIONS)
    if unknown:
        raise ValueError(f"layout {name}: unknown options {sorted(unknown)}")

    def register(plan: Planner) -> Planner:
        LAYOUTS.add(name, Layout(name, plan, video, frozenset(options)))
        return plan

    return register
