"""The multimodal student (``--student mobilenetv3-small-mm``): its registration, its training stream (frames of
every modality through fasd.training.modalities' transforms) and how the trainer picks a student's stream."""

from __future__ import annotations


import numpy as np
import torch

from fasd.constants import MODALITIES, STUDENT_INPUT_SIZE
from fasd.data.source import FrameSource
from fasd.errors import FasdError
from fasd.student_train.data import StudentFrames
from fasd.student_train.multimodal import MultiModalStudent, load_imagenet_weights_per_modality
from fasd.student_train.streams import Stream
from fasd.student_train.students import StudentConfig, register_student
from fasd.training.modalities import BLANK_FRAME, Frame, modality_eval_transform, modality_train_transform


class ModalityFrames(StudentFrames):
    """StudentFrames whose items carry every modality (the image is (M, 3, S, S)); stored views are RGB-only."""

    blank = BLANK_FRAME

    def read(self, source: FrameSource, row: int) -> Frame:
        return source.read_modalities(row)

    def set_views(self, params: list[np.ndarray], partners=None) -> None:
        raise FasdError("--views: stored views are RGB-only; train the multimodal student without --views")


class StackedMultiModalStudent(MultiModalStudent):
    """MultiModalStudent whose training outputs take the stream's stacked (N, M, 3, S, S) images."""

    def __init__(self, config: StudentConfig) -> None:
        super().__init__(config.projection_dim, config.modality_dropout)
        self.config = config

    def outputs(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self(*images.unbind(1))


MODALITY_STREAM = Stream(ModalityFrames, modality_train_transform, modality_eval_transform)


def _pretrained(student: StackedMultiModalStudent, weights) -> str | None:
    return load_imagenet_weights_per_modality(student, weights)


@register_student("mobilenetv3-small-mm", help="one MobileNetV3-Small per modality (RGB, depth, IR), fused; "
                  "a missing modality is the zero image (paper B's phone student)", input_size=STUDENT_INPUT_SIZE,
                  pretrained=_pretrained, modalities=MODALITIES, stream=MODALITY_STREAM, options=("modality_dropout",))
def build_multimodal(config: StudentConfig) -> StackedMultiModalStudent:
    return StackedMultiModalStudent(config)

