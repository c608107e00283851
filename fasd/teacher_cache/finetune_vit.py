"""``fasd teacher-finetune --method vit``: fine-tune a timm ViT/DeiT for FAS, as HaTFAS fine-tunes DeiT-Base per
dataset, through the shared loop of fasd.teacher_cache.finetune.

The whole network trains with cross-entropy on its 2-way [spoof, live] head; inputs follow the ``vit`` teacher
kind's contract (ImageNet mean/std at the model's input size). ``--init`` starts from a timm/DeiT checkpoint (a
plain state dict or ``{'model': ...}``; an ImageNet-pretrained 1000-way head is replaced by a fresh 2-way one),
otherwise from random weights. The checkpoint is DeiT's format, ``{'model': state_dict, 'epoch': int, 'arch':
name}``, which ``fasd cache-teacher --teacher vit --arch NAME`` reads.
"""

from __future__ import annotations

from pathlib import Path

import torch

from fasd.constants import CLASS_NAMES
from fasd.io_checks import write_atomically
from fasd.teacher_cache.finetune import FinetuneModel, FinetuneOptions, register_finetune
from fasd.teacher_cache.checkpoint import check_state_fits
from fasd.teacher_cache.vit import VitTeacher, checkpoint_img_size, read_vit_state
from fasd.vit_layers import build_timm_vit

DEFAULT_ARCH = "deit_base_patch16_224"  # HaTFAS' teacher
DEIT_LR_PER_512 = 5e-4  # DeiT's lr = 5e-4 · batch / 512
_HEAD_KEYS = ("head.weight", "head.bias")


def _initial_model(options: FinetuneOptions, arch: str) -> tuple[torch.nn.Module, str]:
    model = build_timm_vit(arch, num_classes=len(CLASS_NAMES), img_size=options.input_size)
    if options.init is None:
        return model, f"random {arch} (seed {options.seed})"
    state = read_vit_state(options.init, options.trust_checkpoint)
    img_size = checkpoint_img_size(model, state)  # a checkpoint trained at another resolution keeps it
    if img_size is not None:
        model = build_timm_vit(arch, num_classes=len(CLASS_NAMES), img_size=img_size)
    head = state.get("head.weight")
    if head is not None and head.shape[0] != len(CLASS_NAMES):  # e.g. ImageNet's 1000-way head: start a new one
        state = {k: v for k, v in state.items() if k not in _HEAD_KEYS}
        state.update({k: v for k, v in model.state_dict().items() if k in _HEAD_KEYS})
    check_state_fits(model, state, f"--init {options.init}", f"pass the --arch it was trained as (e.g. {DEFAULT_ARCH})")
    return model, f"checkpoint {options.init}"


def save_deit_checkpoint(model: torch.nn.Module, arch: str, epochs: int, out: Path) -> None:
    """DeiT's format, written to a temporary file and renamed so ``out`` is never half written."""
    state = {k: v.cpu() for k, v in model.state_dict().items()}
    write_atomically(out, lambda tmp: torch.save({"model": state, "epoch": int(epochs), "arch": arch}, tmp))


@register_finetune("vit", help="a timm ViT/DeiT with a 2-way head, all layers trained (HaTFAS' teacher); "
                   "writes {'model': ...} for --teacher vit")
def vit_method(options: FinetuneOptions) -> FinetuneModel:
    arch = options.arch or DEFAULT_ARCH
    model, origin = _initial_model(options, arch)
    teacher = VitTeacher(model, arch)
    return FinetuneModel(teacher, "vit", f"{arch}@{teacher.input_size}", origin,
                         default_lr=lambda batch: DEIT_LR_PER_512 * batch / 512,
                         save=lambda epochs, out: save_deit_checkpoint(model, arch, epochs, out),
                         details={"timm_arch": arch})
