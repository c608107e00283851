"""The frozen CLIP teacher: image tower + text centroids -> (unit CLS feature, [spoof, live] logits).

The architecture is read from the checkpoint's shapes (open_clip's OpenAI-format builder), so a tiny
CLIP behaves exactly like ViT-B/16.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch
import torch.nn as nn
import torch.nn.functional as F

from fasd.constants import CLASS_NAMES, CLIP_MEAN, CLIP_STD
from fasd.teacher_cache.checkpoint import clip_state_dict, file_sha256, read_checkpoint
from fasd.teacher_cache.prompts import centroids_from_embeddings

TEACHER_KINDS = ("flip-mcl", "clip")


def build_clip(state: dict[str, torch.Tensor]) -> open_clip.model.CLIP:
    """An fp32 open_clip CLIP in eval mode built from an OpenAI-format state dict."""
    model = open_clip.model.build_model_from_openai_state_dict(dict(state), cast_dtype=None).float()
    # The builder casts to fp16; reload so fp32 checkpoints keep their full precision.
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    return model.eval()


def describe_arch(model: open_clip.model.CLIP) -> str:
    visual = model.visual
    patch = visual.conv1.kernel_size[0]
    return (f"ViT-{len(visual.transformer.resblocks)}L-{visual.conv1.out_channels}W/{patch}"
            f"@{visual.image_size[0]}-D{visual.proj.shape[1]}")


@torch.no_grad()
def encode_prompts(model: open_clip.model.CLIP, prompts: dict[str, list[str]]) -> list[torch.Tensor]:
    """Raw (unnormalised) text embeddings per class, in CLASS_NAMES order."""
    context = model.context_length
    device = next(model.parameters()).device
    return [model.encode_text(open_clip.tokenize(prompts[c], context_length=context).to(device))
            for c in CLASS_NAMES]


class Teacher(nn.Module):
    """Maps CLIP-normalised images (N, 3, S, S) to (unit features (N, D), logits (N, 2)).

    The forward keeps gradients so fine-tuning trains the same module; inference callers wrap it in
    ``torch.inference_mode()``.
    """

    def __init__(self, clip: open_clip.model.CLIP, centroids: torch.Tensor, logit_scale: float):
        super().__init__()
        self.visual = clip.visual
        self.register_buffer("centroids", centroids.float())
        self.logit_scale = logit_scale
        self.input_size = int(clip.visual.image_size[0])

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feature = F.normalize(self.visual(images).float(), dim=-1)
        return feature, self.logit_scale * feature @ self.centroids.t()


@dataclass
class LoadedTeacher:
    teacher: Teacher
    fingerprint: dict  # recorded in the store; a store of another fingerprint is refused


def load_teacher(kind: str, checkpoint: str | Path, prompts: dict[str, list[str]], centroid_mode: str = "flip",
                 trust_checkpoint: bool = False) -> LoadedTeacher:
    """Build the teacher from a checkpoint file (FLIP format for flip-mcl, OpenAI state dict for clip)."""
    checkpoint = Path(checkpoint)
    state = clip_state_dict(read_checkpoint(checkpoint, trust_checkpoint), checkpoint)
    clip = build_clip(state)
    centroids = centroids_from_embeddings(encode_prompts(clip, prompts), centroid_mode)
    logit_scale = float(clip.logit_scale.detach().exp())
    teacher = Teacher(clip, centroids, logit_scale).eval()
    fingerprint = {
        "name": kind, "arch": describe_arch(clip), "checkpoint_sha256": file_sha256(checkpoint),
        "prompts": prompts, "centroid_mode": centroid_mode, "logit_scale": logit_scale,
        "input_size": teacher.input_size, "mean": list(CLIP_MEAN), "std": list(CLIP_STD),
        "feature_dim": int(centroids.shape[1]),
    }
    return LoadedTeacher(teacher, fingerprint)
