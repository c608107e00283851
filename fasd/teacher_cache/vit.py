"""The timm ViT/DeiT teacher (HaTFAS' DeiT-Base fine-tuned for FAS): a 2-way head [spoof, live], the final
CLS feature and CLS tokens at intermediate blocks (fasd.vit_layers).

Checkpoints: a plain state dict, DeiT's / HaTFAS' ``{'model': state, 'optimizer': ..., 'args': ...}`` or
``{'state_dict': state}``. DeiT's training checkpoints pickle an ``argparse.Namespace`` beside the weights,
so they only load with ``--trust-checkpoint``; a state dict saved on its own loads safely. The architecture is
timm's by name (``--arch``); a checkpoint fine-tuned at another resolution (its position embedding holds
another square grid) is built at that resolution. Input contract: DeiT's ImageNet mean/std at the model's
``patch_embed.img_size``.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn as nn
from timm.models.vision_transformer import VisionTransformer

from fasd.constants import CLASS_NAMES, IMAGENET_MEAN, IMAGENET_STD
from fasd.errors import FasdError
from fasd.store_schema import layout
from fasd.store_schema.specs import TargetSpec
from fasd.teacher_cache.checkpoint import check_state_fits, file_sha256, read_checkpoint
from fasd.teacher_cache.registry import LoadedTeacher, TeacherOptions, register_teacher
from fasd.vit_layers import build_timm_vit, check_layers, check_tap, vit_outputs

VIT_MEAN = IMAGENET_MEAN  # DeiT trains and evaluates on ImageNet statistics
VIT_STD = IMAGENET_STD
_STATE_KEYS = ("model", "state_dict")  # DeiT / HaTFAS save {'model': ...}; other trainers {'state_dict': ...}
_DDP_PREFIX = "module."


def read_vit_state(checkpoint: Path, trust_checkpoint: bool) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors as an fp32 state dict (fp16 files included), DDP's ``module.`` prefix removed."""
    raw = read_checkpoint(checkpoint, trust_checkpoint)
    if isinstance(raw, dict):
        raw = next((raw[key] for key in _STATE_KEYS if isinstance(raw.get(key), dict)), raw)
    state = {k: v for k, v in raw.items() if isinstance(v, torch.Tensor)} if isinstance(raw, dict) else {}
    if not state:
        raise FasdError(f"{checkpoint} holds no ViT state dict; expected a plain state dict, {{'model': state}} "
                        f"(DeiT / HaTFAS) or {{'state_dict': state}}")
    if all(k.startswith(_DDP_PREFIX) for k in state):
        state = {k[len(_DDP_PREFIX):]: v for k, v in state.items()}
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def checkpoint_img_size(model: VisionTransformer, state: dict[str, torch.Tensor]) -> int | None:
    """The input size of a checkpoint whose position embedding holds another square grid than ``model``'s."""
    saved, built = state.get("pos_embed"), model.pos_embed
    if saved is None or built is None or saved.shape == built.shape or saved.shape[2:] != built.shape[2:]:
        return None
    grid_tokens = saved.shape[1] - (0 if model.no_embed_class else model.num_prefix_tokens)
    side = math.isqrt(max(grid_tokens, 0))
    return side * model.patch_embed.patch_size[0] if side and side * side == grid_tokens else None


class VitTeacher(nn.Module):
    """Maps ImageNet-normalised images (N, 3, S, S), S = ``input_size``, to
    ``logits`` (N, 2) [spoof, live], ``feature`` (N, W) — the final CLS token after the final norm, NOT
    L2-normalised (the raw token the head reads; a loss that wants unit vectors normalises it) — and,
    when ``layers`` were given, ``layer_cls`` (N, L, W) read by ``tap`` (fasd.vit_layers).

    The forward keeps gradients; inference callers wrap it in ``torch.inference_mode()``.
    """

    def __init__(self, model: VisionTransformer, arch: str, layers: tuple[int, ...] = (),
                 tap: str = "block") -> None:
        super().__init__()
        self.model = model
        self.arch = arch
        self.layers = check_layers(layers, len(model.blocks)) if layers else ()
        self.tap = check_tap(tap)
        self.input_size = int(model.patch_embed.img_size[0])

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return vit_outputs(self.model, images, self.layers, self.tap)


def load_vit_teacher(checkpoint: Path, arch: str, layers: tuple[int, ...], tap: str,
                     trust_checkpoint: bool = False) -> VitTeacher:
    """The fp32 teacher in eval mode; a checkpoint that does not fit ``arch`` or has no 2-way head is one
    FasdError line naming the first mismatching key."""
    check_tap(tap)
    state = read_vit_state(Path(checkpoint), trust_checkpoint)
    model = build_timm_vit(arch, num_classes=len(CLASS_NAMES))
    img_size = checkpoint_img_size(model, state)
    if img_size is not None:
        model = build_timm_vit(arch, num_classes=len(CLASS_NAMES), img_size=img_size)
    head = state.get("head.weight")
    if head is not None and head.ndim == 2 and head.shape[0] != len(CLASS_NAMES) \
            and head.shape[1] == model.head.weight.shape[1]:
        raise FasdError(f"{checkpoint}: head.weight is {tuple(head.shape)}, a {head.shape[0]}-way head; fasd needs "
                        f"a 2-way [spoof, live] head: fine-tune the ViT for face anti-spoofing first")
    check_state_fits(model, state, f"{checkpoint} (--arch {arch})", "pass the --arch the checkpoint was trained "
                     "with (e.g. deit_base_patch16_224 for HaTFAS' teacher)")
    return VitTeacher(model, arch, tuple(layers), tap).eval()


@register_teacher("vit", help="a timm ViT/DeiT checkpoint with a 2-way head (--arch NAME)", normalize="imagenet")
def load_vit(options: TeacherOptions, normalize: str) -> LoadedTeacher:
    """Targets: logits, the final CLS feature (not unit norm: for the head-aware and KL terms, not vlmkd's
    feature term) and, with --layers, layer_cls."""
    if not options.arch:
        raise FasdError("--teacher vit needs --arch, the timm model name the checkpoint was trained as "
                        "(e.g. deit_base_patch16_224)")
    teacher = load_vit_teacher(options.checkpoint, options.arch, tuple(options.layers), options.layer_tap,
                               options.trust_checkpoint)
    width = int(teacher.model.embed_dim)
    targets = {layout.LOGITS: TargetSpec((2,), layout.LOGITS_DTYPE),
               layout.FEATURE: TargetSpec((width,), layout.FEATURE_DTYPE)}
    if teacher.layers:
        targets["layer_cls"] = TargetSpec((len(teacher.layers), width), layout.FEATURE_DTYPE)
    return LoadedTeacher(
        teacher, "vit", f"{options.arch}@{teacher.input_size}", file_sha256(Path(options.checkpoint)),
        teacher.input_size, normalize, targets,
        details={"timm_arch": options.arch, "layers": list(teacher.layers), "layer_tap": teacher.tap})
