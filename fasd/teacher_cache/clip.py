"""CLIP teachers (``flip-mcl``, ``clip``): image tower + text centroids -> unit CLS feature and
[spoof, live] logits.

The architecture is read from the checkpoint's shapes (open_clip's OpenAI-format builder), so a tiny
CLIP behaves exactly like ViT-B/16. Input contracts: FLIP trained and evaluated FLIP-MCL on ImageNet
mean/std (FLIP's utils/dataset.py), vanilla OpenAI CLIP uses CLIP's own statistics.
"""

from __future__ import annotations

from pathlib import Path

import open_clip
import torch
import torch.nn as nn
import torch.nn.functional as F

from fasd.constants import CLASS_NAMES
from fasd.store_schema import layout
from fasd.store_schema.specs import TargetSpec
from fasd.errors import FasdError
from fasd.teacher_cache.checkpoint import check_state_fits, clip_state_dict, file_sha256, read_checkpoint
from fasd.teacher_cache.prompts import centroids_from_embeddings, default_prompts
from fasd.teacher_cache.registry import LoadedTeacher, TeacherOptions, register_teacher


def build_clip(state: dict[str, torch.Tensor], what: str = "the checkpoint") -> open_clip.model.CLIP:
    """An fp32 open_clip CLIP in eval mode built from an OpenAI-format state dict (architecture read from its
    shapes); a state dict whose tensors do not agree with each other is one FasdError line."""
    try:
        model = open_clip.model.build_model_from_openai_state_dict(dict(state), cast_dtype=None).float()
    except (RuntimeError, KeyError, ValueError, IndexError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise FasdError(f"{what} is not a consistent CLIP ViT state dict ({first[:200]})") from None
    # The builder casts to fp16; reload so fp32 checkpoints keep their full precision.
    check_state_fits(model, {k: v.float() for k, v in state.items() if k in model.state_dict()}, what,
                     "pass the checkpoint of a CLIP ViT (OpenAI format, or FLIP's)")
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
    """Maps normalised images (N, 3, S, S) to {"feature": unit features (N, D), "logits": (N, 2)}.

    The forward keeps gradients so fine-tuning trains the same module; inference callers wrap it in
    ``torch.inference_mode()``.
    """

    def __init__(self, clip: open_clip.model.CLIP, centroids: torch.Tensor, logit_scale: float):
        super().__init__()
        self.visual = clip.visual
        self.register_buffer("centroids", centroids.float())
        self.logit_scale = logit_scale
        self.input_size = int(clip.visual.image_size[0])

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        feature = F.normalize(self.visual(images).float(), dim=-1)
        return {layout.FEATURE: feature, layout.LOGITS: self.logit_scale * feature @ self.centroids.t()}


def _load_clip(kind: str, options: TeacherOptions, normalize: str) -> LoadedTeacher:
    """FLIP checkpoint or OpenAI-format state dict -> the frozen teacher with its prompt centroids."""
    checkpoint = Path(options.checkpoint)
    prompts = options.prompts or default_prompts()
    state = clip_state_dict(read_checkpoint(checkpoint, options.trust_checkpoint), checkpoint)
    clip = build_clip(state, str(checkpoint))
    centroids = centroids_from_embeddings(encode_prompts(clip, prompts), options.centroid_mode)
    logit_scale = float(clip.logit_scale.detach().exp())
    teacher = Teacher(clip, centroids, logit_scale).eval()
    dim = int(centroids.shape[1])
    return LoadedTeacher(
        teacher, kind, describe_arch(clip), file_sha256(checkpoint), teacher.input_size, normalize,
        targets={layout.FEATURE: TargetSpec((dim,), layout.FEATURE_DTYPE),
                 layout.LOGITS: TargetSpec((2,), layout.LOGITS_DTYPE)},
        details={"prompts": prompts, "centroid_mode": options.centroid_mode, "logit_scale": logit_scale,
                 "feature_dim": dim},
        texts={"centroids": centroids.cpu().numpy().astype("float32")})


@register_teacher("flip-mcl", help="a FLIP checkpoint (FLIP-MCL fine-tuned CLIP ViT)", normalize="imagenet")
def load_flip_mcl(options: TeacherOptions, normalize: str) -> LoadedTeacher:
    return _load_clip("flip-mcl", options, normalize)


@register_teacher("clip", help="an OpenAI-format CLIP state dict or TorchScript archive", normalize="clip")
def load_openai_clip(options: TeacherOptions, normalize: str) -> LoadedTeacher:
    return _load_clip("clip", options, normalize)
