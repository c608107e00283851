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

from fasd.constants import NO_NORMALIZATION, NORMALIZATIONS
from fasd.errors import FasdError
from fasd.registry import Registry
from fasd.store_schema.specs import REQUIRED_TARGET, TargetSpec, specs_to_json

MEMBERS = ("fasd.teacher_cache.clip", "fasd.teacher_cache.vit", "fasd.teacher_cache.mmda.kind",
           "fasd.teacher_cache.onnx_teacher")
# The contract of a model whose file does not state it (TeacherOptions field -> its flag); a kind reads the ones it
# lists in TeacherKind.reads and refuses the others.
CONTRACT_FLAGS = {"input_size": "--input-size", "channel_order": "--channel-order", "pixel_range": "--pixel-range",
                  "live_classes": "--live-class", "feature_output": "--feature-output"}


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
    # the input/output contract (CONTRACT_FLAGS); None / (): not given
    input_size: int | None = None
    channel_order: str | None = None
    pixel_range: int | None = None
    live_classes: tuple[int, ...] = ()
    feature_output: str | None = None


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
    reads: tuple[str, ...] = ()  # the CONTRACT_FLAGS fields it reads
    raw_pixels: bool = False  # accepts --normalize none


TEACHERS: Registry[TeacherKind] = Registry("--teacher", MEMBERS)


def register_teacher(name: str, help: str, normalize: str, reads: tuple[str, ...] = (),
                     raw_pixels: bool = False) -> Callable:
    """Register ``build(options, normalize) -> LoadedTeacher`` as teacher kind ``name`` whose input contract
    defaults to the ``normalize`` statistics; ``reads``: the contract options (CONTRACT_FLAGS) it reads,
    ``raw_pixels``: whether it accepts --normalize none."""
    return TEACHERS.register(name, lambda build: TeacherKind(name, help, normalize, build, reads, raw_pixels))


def contract_options(fingerprint: dict) -> dict:
    """The contract options a store's teacher fingerprint records (its ``contract``), as TeacherOptions fields."""
    contract = fingerprint.get("contract", {})
    return {name: tuple(value) if isinstance(value, list) else value for name, value in contract.items()
            if name in CONTRACT_FLAGS}


def _check_applies(kind: TeacherKind, options: TeacherOptions) -> None:
    """Contract options and --normalize none given to a kind that does not read them are one line, not ignored."""
    for name, flag in CONTRACT_FLAGS.items():
        if getattr(options, name) not in (None, ()) and name not in kind.reads:
            readers = [k.name for k in TEACHERS.all().values() if name in k.reads]
            raise FasdError(f"{flag} does not apply to --teacher {kind.name} (it states its own contract); "
                            f"only --teacher {' or '.join(readers)} reads it")
    if options.normalize == NO_NORMALIZATION and not kind.raw_pixels:
        valid = [n for n in NORMALIZATIONS if n != NO_NORMALIZATION]
        raise FasdError(f"--normalize {NO_NORMALIZATION}: --teacher {kind.name} reads normalised pixels; "
                        f"use {' or '.join(valid)} (default {kind.default_normalize})")


def teacher_kinds() -> dict[str, TeacherKind]:
    return TEACHERS.all()


def load_teacher(kind: str, options: TeacherOptions) -> LoadedTeacher:
    """Build a registered teacher kind from its checkpoint; unknown kinds and normalisations are one line."""
    chosen = TEACHERS.get(kind)
    if options.normalize is not None and options.normalize not in NORMALIZATIONS:
        raise FasdError(f"unknown --normalize '{options.normalize}'; valid: {', '.join(NORMALIZATIONS)}")
    _check_applies(chosen, options)
    if not Path(options.checkpoint).is_file():
        raise FasdError(f"teacher checkpoint not found: {options.checkpoint}")
    loaded = chosen.build(options, options.normalize or chosen.default_normalize)
    if REQUIRED_TARGET not in loaded.targets:  # a registration bug, not a user error
        raise ValueError(f"teacher kind {kind} declares no '{REQUIRED_TARGET}' target")
    if options.layers and "layer_cls" not in loaded.targets:  # it would cache no layer tokens, without a word
        raise FasdError(f"--layers: --teacher {kind} cannot tap intermediate layers (it caches "
                        f"{', '.join(loaded.targets)}); drop --layers or use --teacher vit")
    return loaded

