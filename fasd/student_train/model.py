"""The MobileNetV3-Small student (``--student mobilenetv3-small``), its deployable subset and ImageNet weight
loading."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models import mobilenet_v3_small

from fasd.constants import STUDENT_INPUT_SIZE
from fasd.errors import FasdError
from fasd.state_fit import check_state_fits
from fasd.student_train.students import StudentConfig, register_student

FEATURE_DIM = 576  # channels of mobilenet_v3_small().features' last block
PROJECTION_DIM = 512  # default: ViT-B/16's CLS feature size (the projection matches the teacher's D)
NUM_CLASSES = 2  # [spoof, live], index == label
_LOGIT_HIDDEN = 128
BN_MOMENTUM = 0.1
_FEATURES_PREFIX = "features."
_HUB_PATTERN = "mobilenet_v3_small-*.pth"


class Student(nn.Module):
    """Encoder + logit head h + projection head g (g only exists when a loss term reads it, and only matters
    during training).

    Input: ImageNet-normalised float images, N x 3 x 112 x 112.
    """

    input_size = STUDENT_INPUT_SIZE

    def __init__(self, projection_dim: int | None = PROJECTION_DIM) -> None:
        super().__init__()
        self.config = StudentConfig(projection_dim=projection_dim)
        # Named `features` so a torchvision mobilenet_v3_small state dict's `features.*` keys match.
        self.features = mobilenet_v3_small(weights=None).features
        # torchvision builds MobileNetV3's batch norms with momentum 0.01, tuned for ImageNet's ~1 M steps.
        # Distillation runs are a few hundred to a few thousand steps: with 0.01 the running statistics
        # used at evaluation are still mostly their initial values and eval-mode scores collapse to a
        # constant. PyTorch's default 0.1 converges within ~50 steps.
        for module in self.features.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = BN_MOMENTUM
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.logit_head = nn.Sequential(
            nn.Linear(FEATURE_DIM, _LOGIT_HIDDEN),
            nn.BatchNorm1d(_LOGIT_HIDDEN),
            nn.ReLU(inplace=True),
            nn.Linear(_LOGIT_HIDDEN, NUM_CLASSES),
        )
        self.projection_head = None if projection_dim is None else nn.Sequential(
            nn.Linear(FEATURE_DIM, projection_dim),
            nn.GELU(),
            nn.Linear(projection_dim, projection_dim),
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The 576-d pooled feature f^S."""
        return torch.flatten(self.pool(self.features(x)), 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (logits [spoof, live], f^S)."""
        features = self.encode(x)
        return self.logit_head(features), features

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """g(f^S), unnormalised; the losses normalise it."""
        return self.projection_head(features)

    def outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The training outputs: logits and, with a projection head, the projection g(f^S)."""
        logits, features = self(x)
        if self.projection_head is None:
            return {"logits": logits}
        return {"logits": logits, "projection": self.project(features)}

    def deployable(self) -> "DeployedStudent":
        return DeployedStudent(self)


class DeployedStudent(nn.Module):
    """What ONNX export ships: encoder + logit head, no projection head.

    Input: ImageNet-normalised float images, N x 3 x 112 x 112 (resize to 112 x 112, scale
    to [0, 1], subtract IMAGENET_MEAN, divide by IMAGENET_STD).
    Output: (logits N x 2 ordered [spoof, live], p_live N = softmax(logits)[:, 1]).
    Shares the student's modules (no copy).
    """

    def __init__(self, student: Student) -> None:
        super().__init__()
        self.features = student.features
        self.pool = student.pool
        self.logit_head = student.logit_head

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.logit_head(torch.flatten(self.pool(self.features(x)), 1))
        return logits, torch.softmax(logits, dim=1)[:, 1]


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def parameter_counts(student: Student) -> dict[str, int]:
    """Parameter counts: total (training), deployed (encoder + logit head), projection head."""
    return {
        "total": _count(student),
        "deployed": _count(DeployedStudent(student)),
        "projection": _count(student.projection_head) if student.projection_head is not None else 0,
    }


def _hub_checkpoint() -> Path | None:
    """A torchvision mobilenet_v3_small checkpoint already in the local torch hub cache."""
    found = sorted((Path(torch.hub.get_dir()) / "checkpoints").glob(_HUB_PATTERN))
    return found[0] if found else None


def _load_features(student: Student, path: Path) -> None:
    """Load the `features.*` tensors of a torchvision state dict file into the encoder."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for unreadable / non-weights files
        raise FasdError(
            f"cannot read student weights {path}: {exc.__class__.__name__}; "
            "pass a torchvision mobilenet_v3_small state dict file (torch.save(model.state_dict()))"
        ) from exc
    if not isinstance(state, dict):
        raise FasdError(f"student weights {path} is not a state dict; "
                        "pass a torchvision mobilenet_v3_small state dict file")
    encoder_state = {key[len(_FEATURES_PREFIX):]: value for key, value in state.items()
                     if isinstance(key, str) and key.startswith(_FEATURES_PREFIX)}
    if not encoder_state:
        raise FasdError(f"student weights {path} has no 'features.*' keys; "
                        "pass a torchvision mobilenet_v3_small state dict file")
    check_state_fits(student.features, encoder_state, f"student weights {path}",
                     "pass a torchvision mobilenet_v3_small state dict file")


def load_imagenet_weights(student: Student, weights: Path | None = None) -> str | None:
    """Initialise the encoder from ImageNet weights; never downloads.

    Uses ``weights`` when given (errors are FasdError), else a checkpoint already in the
    torch hub cache. Returns a warning message when neither is available and the encoder
    keeps its random initialisation, else None.
    """
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise FasdError(f"student weights file {path} does not exist; "
                            "pass an existing torchvision mobilenet_v3_small state dict file")
        _load_features(student, path)
        return None
    cached = _hub_checkpoint()
    if cached is None:
        return (f"no ImageNet weights for mobilenet_v3_small in {torch.hub.get_dir()}/checkpoints; "
                "the student starts from random initialisation (pass --student-weights FILE to fix)")
    _load_features(student, cached)
    return None


def build_student(weights: Path | None = None,
                  projection_dim: int | None = PROJECTION_DIM) -> tuple[Student, str | None]:
    """A fresh student with ImageNet weights where available, and the fallback warning if any."""
    student = Student(projection_dim)
    return student, load_imagenet_weights(student, weights)


@register_student("mobilenetv3-small", help="torchvision MobileNetV3-Small at 112 px (paper A); ships encoder + "
                  "logit head", input_size=STUDENT_INPUT_SIZE, pretrained=load_imagenet_weights)
def build_mobilenet(config: StudentConfig) -> Student:
    return Student(config.projection_dim)
