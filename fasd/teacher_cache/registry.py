"""The teacher registry: every teacher kind `fasd cache-teacher --teacher KIND` accepts, registered by name.

A member module decorates a builder with ``@register_teacher("name", help=...)``; the builder takes the
TeacherOptions and returns a LoadedTeacher: a frozen module mapping normalised images to a dict of targets,
its input contract, its target specs and the fingerprint the store records. Adding a kind touches its own
module and MEMBERS below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch.nn as nn

from fasd.constants import NORMALIZATIONS
from fasd.errors import FasdError
from fasd.registry import Registry
from fasd.store_schema.specs import REQUIRED_TARGET, TargetSpec, specs_to_json

MEMBERS = ("fasd.teacher_cache.clip", "fasd.teacher_cache.vit", "fasd.teacher_cache.mmda.kind")


@dataclass
class TeacherOptions:
    """Everything cache-teacher, verify and fine-tuning pass to a teacher builder; a kind reads what it needs."""

    checkpoint: Path
    trust_checkpoint: bool = False
    normalize: str | None = None  # None: the kind's own input contract
    prompts: dict[str, list[str]] | None = None  # CLIP kinds (None: FLIP's ensemble)
    centroid_mode: str = "flip"  # CLIP kinds
    arch: str | None = None  # timm kinds
    layers: tuple[int, ...] = ()  # intermediate CLS tokens to cache as layer_cls
    layer_tap: str = "block"


@dataclass
class LoadedTeacher:
    """A frozen teacher ready to cache: ``module(images) -> {target name: (N, *shape) tensor}`` on images
    resized to ``input_size`` and normalised with ``mean``/``std``."""

    module: nn.Module
    kind: str
    arch: str
    checkpoint_sha256: str
    input_size: int
    normalize: str
    targets: dict[str, TargetSpec]
    details: dict = field(default_factory=dict)  # kind-specific, recorded in the fingerprint
    texts: dict = field(default_factory=dict)  # arrays for the store's text/ group (centroids, captions)
    # ("rgb",): module(images) on RGB; more: module({modality: images}, mask (N, M) bool) on every modality
    modalities: tuple[str, ...] = ("rgb",)

    @property
    def mean(self) -> tuple[float, ...]:
        return NORMALIZATIONS[self.normalize][0]

    @property
    def std(self) -> tuple[float, ...]:
        return NORMALIZATIONS[self.normalize][1]

    @property
    def fingerprint(self) -> dict:
        """What the store records; a store cached with another fingerprint is refused."""
        return {"name": self.kind, "arch": self.arch, "checkpoint_sha256": self.checkpoint_sha256,
                "input_size": self.input_size, "normalize": self.normalize, "mean": list(self.mean),
                "std": list(self.std), "interpolation": "bicubic", "targets": specs_to_json(self.targets),
                **self.details}


@dataclass(frozen=True)
class TeacherKind:
    name: str
    help: str
    default_normalize: str
    build: Callable[[TeacherOptions, str], LoadedTeacher]  # (options, resolved normalisation)


TEACHERS: Registry[TeacherKind] = Registry("--teacher", MEMBERS)


def register_teacher(name: str, help: str, normalize: str) -> Callable:
    """Register ``build(options, normalize) -> LoadedTeacher`` as teacher kind ``name`` whose input contract
    defaults to the ``normalize`` statistics."""
    return TEACHERS.register(name, lambda build: TeacherKind(name, help, normalize, build))


def teacher_kinds() -> dict[str, TeacherKind]:
    return TEACHERS.all()


def load_teacher(kind: str, options: TeacherOptions) -> LoadedTeacher:
    """Build a registered teacher kind from its checkpoint; unknown kinds and normalisations are one line."""
    chosen = TEACHERS.get(kind)
    if options.normalize is not None and options.normalize not in NORMALIZATIONS:
        raise FasdError(f"unknown --normalize '{options.normalize}'; valid: {', '.join(NORMALIZATIONS)}")
    if not Path(options.checkpoint).is_file():
        raise FasdError(f"teacher checkpoint not found: {options.checkpoint}")
    loaded = chosen.build(options, options.normalize or chosen.default_normalize)
    if REQUIRED_TARGET not in loaded.targets:  # a registration bug, not a user error
        raise ValueError(f"teacher kind {kind} declares no '{REQUIRED_TARGET}' target")
    return loaded

