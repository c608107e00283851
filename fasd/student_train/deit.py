"""The DeiT-Tiny student of HaTFAS (timm ``deit_tiny_patch16_224``: 192-d, 3 heads, 12 blocks, ~5.5 M
parameters, trained from scratch) with CLS tokens at the layers the head-aware loss reads.

Input: ImageNet-normalised images (N, 3, S, S), S = ``input_size`` (224 unless built with ``img_size``).
The whole model ships (``deployable()``); the layer taps only matter during training.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from timm.models.vision_transformer import VisionTransformer

from fasd.constants import CLASS_NAMES, LABEL_LIVE
from fasd.student_train.students import StudentConfig, register_student
from fasd.vit_layers import build_timm_vit, check_layers, check_tap, vit_outputs

DEIT_TINY = "deit_tiny_patch16_224"


class DeitStudent(nn.Module):
    """forward(images) -> ``logits`` (N, 2) [spoof, live], ``embedding`` (N, W) the final CLS token after the
    final norm and, when ``layers`` were given, ``layer_cls`` (N, L, W) read by ``tap`` (fasd.vit_layers;
    use the teacher's tap)."""

    def __init__(self, arch: str = DEIT_TINY, layers: tuple[int, ...] = (4, 6, 8), tap: str = "block",
                 img_size: int | None = None) -> None:
        super().__init__()
        self.model = build_timm_vit(arch, num_classes=len(CLASS_NAMES), img_size=img_size)
        self.arch = arch
        self.layers = check_layers(layers, len(self.model.blocks)) if layers else ()
        self.tap = check_tap(tap)
        self.input_size = int(self.model.patch_embed.img_size[0])
        self.width = int(self.model.embed_dim)
        self.config = StudentConfig(layers=list(self.layers), layer_tap=self.tap, arch=arch, input_size=img_size)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs = vit_outputs(self.model, images, self.layers, self.tap)
        outputs["embedding"] = outputs.pop("feature")
        return outputs

    def outputs(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The training outputs (the trainer's interface): the forward's."""
        return self(images)

    def deployable(self) -> "DeployedDeit":
        return DeployedDeit(self.model)


class DeployedDeit(nn.Module):
    """What export ships: the whole ViT. forward(x) -> (logits (N, 2) [spoof, live], p_live (N,) =
    softmax(logits)[:, 1]). Shares the student's modules (no copy)."""

    def __init__(self, model: VisionTransformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(x)
        return logits, torch.softmax(logits, dim=1)[:, LABEL_LIVE]


@register_student("deit-tiny", help="timm DeiT-Tiny at 224 px from scratch (paper C; any timm ViT with "
                  "--student-arch); ships the whole model", input_size=224, outputs=("logits", "layer_cls"),
                  options=("arch", "input_size"))
def build_deit(config: StudentConfig) -> DeitStudent:
    return DeitStudent(config.arch or DEIT_TINY, tuple(config.layers), config.layer_tap, img_size=config.input_size)
