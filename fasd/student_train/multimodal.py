"""The multimodal student (``mobilenetv3-small-mm``, for MMDA distillation): one MobileNetV3-Small encoder per
modality (depth and IR as 3-channel images), the pooled 576-d features concatenated → Linear(3·576, 576) →
the RGB student's heads (fasd.student_train.model: logit head, projection head to the teacher's D).

Inputs are ImageNet-normalised (N, 3, 112, 112) images like the RGB student's. A missing modality is the
all-zero frame (the MMDG/DADM convention), i.e. after normalisation the constant −mean/std image:
``forward`` fills it in for a modality passed as None, and ``modality_dropout`` replaces whole modalities
of random training samples with it (never all modalities of a sample).
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from fasd.constants import IMAGENET_MEAN, IMAGENET_STD, MODALITIES, STUDENT_INPUT_SIZE
from fasd.errors import FasdError
from fasd.student_train.model import FEATURE_DIM, PROJECTION_DIM, Student, load_imagenet_weights
from fasd.student_train.students import StudentConfig


def missing_pixel() -> torch.Tensor:
    """(1, 3, 1, 1): the ImageNet normalisation of a zero pixel, what an all-zero frame becomes."""
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    return (-mean / std).view(1, 3, 1, 1)


class DeployedMultiModal(nn.Module):
    """What ships (one ONNX graph, three inputs): the encoders, the fusion and the logit head.

    ``forward(rgb, depth, ir)``, each ImageNet-normalised (N, 3, 112, 112) with a missing modality as the
    normalised all-zero frame -> (logits (N, 2) [spoof, live], p_live (N,)).
    """

    def __init__(self, encoders: nn.ModuleDict, logit_head: nn.Module) -> None:
        super().__init__()
        self.encoders, self.logit_head = encoders, logit_head
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fuse = nn.Linear(len(MODALITIES) * FEATURE_DIM, FEATURE_DIM)

    def embed(self, images: list[torch.Tensor]) -> torch.Tensor:
        """The fused 576-d embedding of the modalities' images (in MODALITIES order)."""
        pooled = [torch.flatten(self.pool(self.encoders[m](x)), 1) for m, x in zip(MODALITIES, images)]
        return self.fuse(torch.cat(pooled, dim=1))

    def forward(self, rgb: torch.Tensor, depth: torch.Tensor, ir: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.logit_head(self.embed([rgb, depth, ir]))
        return logits, torch.softmax(logits, dim=1)[:, 1]


class MultiModalStudent(nn.Module):
    """``forward(rgb, depth=None, ir=None) -> {"logits", "embedding", "projection" (with a projection head)}``."""

    input_size = STUDENT_INPUT_SIZE

    def __init__(self, projection_dim: int | None = PROJECTION_DIM, modality_dropout: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= modality_dropout < 1.0:
            raise FasdError(f"--modality-dropout must be in [0, 1), got {modality_dropout}")
        self.config = StudentConfig(projection_dim=projection_dim)
        self.modality_dropout = modality_dropout
        # The RGB student's encoder (with its batch-norm settings) and heads, reused as they are.
        template = Student(projection_dim)
        encoders = nn.ModuleDict({m: template.features if m == MODALITIES[0] else Student(None).features
                                  for m in MODALITIES})
        self.core = DeployedMultiModal(encoders, template.logit_head)
        self.projection_head = template.projection_head
        self.register_buffer("missing", missing_pixel(), persistent=False)

    def _complete(self, given: dict[str, torch.Tensor | None]) -> list[torch.Tensor]:
        present = [x for x in given.values() if x is not None]
        if not present:
            raise FasdError("the multimodal student needs at least one of " + ", ".join(MODALITIES))
        blank = self.missing.to(present[0].dtype).expand_as(present[0])
        return [given[m] if given[m] is not None else blank for m in MODALITIES]

    def _drop(self, images: list[torch.Tensor]) -> list[torch.Tensor]:
        """Replace whole modalities of random samples by the missing image; never all of a sample's."""
        n = images[0].shape[0]
        drop = torch.rand(n, len(images), device=images[0].device) < self.modality_dropout
        every = drop.all(dim=1)
        keep = torch.randint(len(images), (n,), device=drop.device)
        drop[every, keep[every]] = False
        blank = self.missing.to(images[0].dtype)
        return [torch.where(drop[:, i].view(-1, 1, 1, 1), blank, x) for i, x in enumerate(images)]

    def forward(self, rgb: torch.Tensor | None, depth: torch.Tensor | None = None,
                ir: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        images = self._complete({"rgb": rgb, "depth": depth, "ir": ir})
        if self.training and self.modality_dropout > 0:
            images = self._drop(images)
        embedding = self.core.embed(images)
        outputs = {"logits": self.core.logit_head(embedding), "embedding": embedding}
        if self.projection_head is not None:
            outputs["projection"] = self.projection_head(embedding)
        return outputs

    def outputs(self, images: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The training outputs from {modality: images} (a modality not in the dict is missing)."""
        return self(*(images.get(m) for m in MODALITIES))

    def deployable(self) -> DeployedMultiModal:
        return self.core


def load_imagenet_weights_per_modality(student: MultiModalStudent, weights=None) -> str | None:
    """ImageNet weights (fasd.student_train.model.load_imagenet_weights) into every modality's encoder."""
    warnings = {load_imagenet_weights(SimpleNamespace(features=encoder), weights)
                for encoder in student.core.encoders.values()}
    return next(iter(warnings))  # the same file (or none) for every encoder: one outcome
