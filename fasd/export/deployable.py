"""The one seam between export and the student: what a checkpoint ships, whatever the student is.

Every exporter, scorer and benchmark in fasd.export obtains the module to run through
``load_deployable``; only this module knows how a training checkpoint is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from fasd.constants import IMAGENET_MEAN, IMAGENET_STD
from fasd.evaluate.metrics import (operating_threshold, parse_operating_point, stored_operating_point,
                                   stored_val_threshold)
from fasd.export.metadata import INPUT_NAME, SINGLE_INPUT, crop_policy_of, student_metadata
from fasd.student_train.checkpoint import DEFAULT_STUDENT, load_student, validation_scores
from fasd.student_train.students import student_kind
from fasd.training.modalities import run_deployed


@dataclass(frozen=True)
class Deployable:
    """``module``: eval-mode nn.Module, forward(x) -> (logits N x 2 [spoof, live], p_live N)."""

    module: nn.Module
    input_names: tuple[str, ...]
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    metadata: dict  # student_metadata(): input contract, label order, validation threshold, fasd version

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.module.parameters())

    @property
    def val_threshold(self) -> float | None:
        return stored_val_threshold(self.metadata)

    def example_inputs(self, batch: int = 1) -> tuple[torch.Tensor, ...]:
        """Zeros of the input contract's shape, one per input, for tracing."""
        return tuple(torch.zeros(batch, len(self.mean), self.input_size, self.input_size)
                     for _ in self.input_names)

    def run(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The module on a batch: (N, 3, S, S), or (N, M, 3, S, S) with one image per input."""
        return run_deployed(self.module, images)


def load_deployable(checkpoint: Path, operating_point: str | None = None) -> Deployable:
    """The checkpoint's registered student's deployable part (MobileNetV3-Small: encoder + logit head;
    DeiT-Tiny: the whole ViT) with its input contract; FasdError if the file is not a fasd student checkpoint.
    ``operating_point`` (eer, apcer=A, bpcer=B): the decision threshold is chosen there on the validation scores
    the checkpoint keeps, instead of the one training chose."""
    student, info = load_student(Path(checkpoint))
    modalities = student_kind((info.get("config") or {}).get("student", DEFAULT_STUDENT)).modalities
    threshold = stored_val_threshold(info)
    if operating_point is not None:
        point = parse_operating_point(operating_point)
        threshold = operating_threshold(point, *validation_scores(info, checkpoint),
                                        f"the validation scores {checkpoint} keeps")
        info["operating_point"] = point.name
    return Deployable(module=student.deployable().eval(),
                      input_names=(INPUT_NAME,) if tuple(modalities) == SINGLE_INPUT else tuple(modalities),
                      input_size=student.input_size, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                      metadata=student_metadata(threshold, student.input_size, modalities,
                                                stored_operating_point(info) if threshold is not None else None,
                                                crop_policy_of(info)))
