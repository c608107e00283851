"""The student registry: every student `fasd train --student NAME` accepts, registered by name.

A student is an nn.Module with
- ``outputs(images) -> dict``: ``logits`` (N, 2) [spoof, live] and, when built for them, ``projection``
  (N, D) (into the teacher's feature space) and ``layer_cls`` (N, L, W) (CLS tokens at the requested layers);
- ``deployable() -> nn.Module``: the part that ships, forward(x) -> (logits, p_live);
- ``input_size`` and ``config`` (the StudentConfig it was built from, saved in checkpoints).
Students take ImageNet-normalised images (fasd.training.transforms).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch.nn as nn

from fasd.errors import FasdError
from fasd.registry import Registry
from fasd.student_train.streams import RGB_STREAM, Stream

MEMBERS = ("fasd.student_train.model", "fasd.student_train.deit", "fasd.student_train.multimodal_stream")


@dataclass
class StudentConfig:
    """How a student is built; saved in its checkpoints so export and evaluation rebuild it exactly."""

    projection_dim: int | None = None  # None: no projection head (nothing in the loss reads it)
    layers: list[int] = field(default_factory=list)  # CLS tokens returned as layer_cls
    layer_tap: str = "block"
    arch: str | None = None  # timm students: the timm model name (None: the student's default)
    input_size: int | None = None  # timm students: another input side (None: the student's default)
    modality_dropout: float = 0.0  # multimodal students: chance a modality of a training sample is dropped

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, value: object, where: str) -> "StudentConfig":
        """The config a checkpoint stores; ``where`` (the file) is named when it does not fit."""
        if not isinstance(value, dict):
            raise FasdError(f"{where}: 'student_config' is a {type(value).__name__}, not a table of student "
                            f"settings; the checkpoint is damaged or was not written by fasd train")
        unknown = sorted(set(value) - {f.name for f in fields(cls)}, key=str)
        if unknown:
            raise FasdError(f"{where}: 'student_config' has the key '{unknown[0]}', which this fasd does not know; "
                            f"use the fasd version that wrote the checkpoint")
        try:
            return cls(**value)
        except TypeError as exc:
            raise FasdError(f"{where}: 'student_config' does not fit ({exc})") from None


@dataclass(frozen=True)
class StudentKind:
    name: str
    help: str
    build: Callable[[StudentConfig], nn.Module]
    input_size: int  # the square image side it takes
    # Loads pre-trained weights into a built student (None: the student trains from scratch); returns a
    # warning when it falls back to random initialisation.
    pretrained: Callable[[nn.Module, Path | None], str | None] | None = None
    modalities: tuple[str, ...] = ("rgb",)  # more: its stream and scorers carry every modality (M, 3, S, S)
    stream: Stream = RGB_STREAM  # how its frames are read and transformed
    outputs: tuple[str, ...] = ("logits", "projection")  # what its training forward can return for loss terms
    options: tuple[str, ...] = ()  # the StudentConfig fields of OPTION_FLAGS it reads


# StudentConfig fields only some students read, and their train flags: another student refuses them.
OPTION_FLAGS = {"arch": "--student-arch", "input_size": "--input-size", "modality_dropout": "--modality-dropout"}

STUDENTS: Registry[StudentKind] = Registry("--student", MEMBERS)


def register_student(name: str, help: str, input_size: int, pretrained: Callable | None = None,
                     modalities: tuple[str, ...] = ("rgb",), stream: Stream = RGB_STREAM,
                     outputs: tuple[str, ...] = ("logits", "projection"), options: tuple[str, ...] = ()) -> Callable:
    return STUDENTS.register(name, lambda build: StudentKind(name, help, build, input_size, pretrained, modalities,
                                                             stream, outputs, options))


def check_student_fits(kind: StudentKind, config: StudentConfig, terms: list) -> None:
    """Refuse, in one line, a student-specific flag this student would ignore, and a loss term reading an output
    it does not return (``terms``: the active fasd.student_train.loss_terms.LossTerm)."""
    default = StudentConfig()
    for option, flag in OPTION_FLAGS.items():
        value = getattr(config, option)
        if value != getattr(default, option) and option not in kind.options:
            users = ", ".join(k.name for k in student_kinds().values() if option in k.options)
            raise FasdError(f"{flag} applies to --student {users}; --student {kind.name} does not read it: drop it")
    if config.input_size is not None and config.input_size < 1:
        raise FasdError(f"--input-size must be a positive number of pixels, got {config.input_size}")
    for term in terms:
        lacking = [output for output in term.outputs if output not in kind.outputs]
        if lacking:
            users = ", ".join(k.name for k in student_kinds().values() if set(term.outputs) <= set(k.outputs))
            raise FasdError(f"{term.flag} reads the student's {lacking[0]}, which --student {kind.name} does not "
                            f"return: pass {term.flag} 0 or --student {users or 'of another kind'}")


def student_kinds() -> dict[str, StudentKind]:
    return STUDENTS.all()


def student_kind(name: str) -> StudentKind:
    return STUDENTS.get(name)
