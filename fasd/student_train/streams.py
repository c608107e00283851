"""How a student's frames are read and transformed (its ``StudentKind.stream``): the dataset type and its train
and eval transforms. RGB students take the default; a multimodal student registers its own."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fasd.student_train.data import StudentFrames
from fasd.training.transforms import eval_transform, train_transform


@dataclass(frozen=True)
class Stream:
    frames: type[StudentFrames]
    train: Callable[[int], Callable]
    eval: Callable[[int], Callable]


RGB_STREAM = Stream(StudentFrames, train_transform, eval_transform)
