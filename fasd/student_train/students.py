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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch.nn as nn

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


STUDENTS: Registry[StudentKind] = Registry("--student", MEMBERS)


def register_student(name: str, help: str, input_size: int, pretrained: Callable | None = None,
                     modalities: tuple[str, ...] = ("rgb",), stream: Stream = RGB_STREAM) -> Callable:
    return STUDENTS.register(name, lambda build: StudentKind(name, help, build, input_size, pretrained, modalities,
                                                             stream))


def student_kinds() -> dict[str, StudentKind]:
    return STUDENTS.all()


def student_kind(name: str) -> StudentKind:
    return STUDENTS.get(name)
