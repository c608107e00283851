"""timm ViT/DeiT models and their CLS tokens at intermediate blocks (HaTFAS' layer targets).

Neutral ground: the ``vit`` teacher (fasd.teacher_cache.vit) caches these tokens and the ``deit-tiny`` student
(fasd.student_train.deit) regresses onto them, so both sides must tap them the same way and neither imports
the other. Two taps (``--layer-tap``):

* ``block`` (the HaTFAS paper's definition, default): the CLS token of the output of block k, before the final
  norm.
* ``official`` (HaTFAS' released code): ``blk.attn(blk.norm1(x0))[:, 0]`` of block k, where x0 is the embedded
  input (patch embedding + CLS/position embedding, then timm's ``patch_drop`` and ``norm_pre``). The official
  loop never updates x, so every listed block's attention sees x0, not the previous block's output.

Everything runs timm's own modules (``patch_embed``, ``_pos_embed``, ``blocks``, ``norm``, ``forward_head``) in
the order ``VisionTransformer.forward_features`` does; nothing of attention is re-implemented.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

import timm
import torch
from timm.models.vision_transformer import VisionTransformer

from fasd.errors import FasdError

# What a tap reads from block k: (block, x0 = embedded input, output of block k) -> (N, W) CLS row.
_TAP_READERS: dict[str, Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "block": lambda block, x0, out: out[:, 0],
    "official": lambda block, x0, out: block.attn(block.norm1(x0))[:, 0],
}
LAYER_TAPS = tuple(_TAP_READERS)  # ("block", "official")
_EXAMPLE_ARCHS = ("deit_tiny_patch16_224", "deit_small_patch16_224", "deit_base_patch16_224",
                  "vit_base_patch16_224")


def build_timm_vit(arch: str, num_classes: int = 2, img_size: int | None = None) -> VisionTransformer:
    """A randomly initialised timm ViT/DeiT with a CLS token (``pretrained=False``: nothing is downloaded).

    ``img_size`` None keeps the architecture's own input size (224 for ``*_224``).
    """
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models("deit*") + timm.list_models("vit_*"), n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise FasdError(f"unknown timm model '{arch}'; {hint}ViT/DeiT names look like {', '.join(_EXAMPLE_ARCHS)}")
    size = {} if img_size is None else {"img_size": img_size}
    try:
        model = timm.create_model(arch, pretrained=False, num_classes=num_classes, **size)
    except TypeError as exc:  # img_size given to a CNN
        raise FasdError(f"'{arch}' is not a timm VisionTransformer ({exc}); use a ViT/DeiT such as "
                        f"{', '.join(_EXAMPLE_ARCHS)}") from None
    if not isinstance(model, VisionTransformer):
        raise FasdError(f"'{arch}' is a timm {type(model).__name__}, not a VisionTransformer; use a ViT/DeiT "
                        f"such as {', '.join(_EXAMPLE_ARCHS)}")
    if model.cls_token is None or model.global_pool != "token":
        raise FasdError(f"'{arch}' does not classify from a CLS token (global_pool={model.global_pool!r}); fasd "
                        f"reads CLS tokens, use a ViT/DeiT such as {', '.join(_EXAMPLE_ARCHS)}")
    return model


def parse_layers(text: str) -> tuple[int, ...]:
    """``"4,6,8"`` -> ``(4, 6, 8)`` (0-based block indices; range checks need the model: check_layers)."""
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise FasdError(f"--layers takes comma-separated 0-based block indices like 4,6,8; got '{text}'") from None


def check_layers(layers: tuple[int, ...], depth: int) -> tuple[int, ...]:
    """The layers as a tuple of ints if they are non-empty, unique and 0 <= k < depth; else one-line FasdError."""
    layers = tuple(layers)
    if not layers:
        raise FasdError(f"--layers is empty; pass 0-based block indices from 0 to {depth - 1}, like 4,6,8")
    bad = [k for k in layers if not 0 <= k < depth]
    if bad:
        raise FasdError(f"--layers {','.join(map(str, layers))}: block {bad[0]} does not exist; this model has "
                        f"{depth} blocks, 0-based indices 0 to {depth - 1}")
    if len(set(layers)) != len(layers):
        raise FasdError(f"--layers {','.join(map(str, layers))} repeats a block; list each block once")
    return layers


def check_tap(tap: str) -> str:
    if tap not in _TAP_READERS:
        raise FasdError(f"unknown --layer-tap '{tap}'; valid: {', '.join(LAYER_TAPS)}")
    return tap


def _head_outputs(model: VisionTransformer, normed: torch.Tensor) -> dict[str, torch.Tensor]:
    """``logits`` (N, classes) and ``feature`` (N, W), the CLS row, from the final-norm tokens (N, T, W)."""
    return {"logits": model.forward_head(normed), "feature": normed[:, 0]}


def cls_at_layers(model: VisionTransformer, images: torch.Tensor, layers: tuple[int, ...],
                  tap: str) -> dict[str, torch.Tensor]:
    """One forward pass: ``logits`` (N, classes), ``feature`` (N, W) final CLS after the final norm and
    ``layer_cls`` (N, L, W), the CLS token at each of ``layers`` (in the order given) read by ``tap``."""
    wanted = check_layers(layers, len(model.blocks))
    read = _TAP_READERS[check_tap(tap)]
    x = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(images))))
    x0, taps = x, {}
    for index, block in enumerate(model.blocks):
        x = block(x)
        if index in wanted:
            taps[index] = read(block, x0, x)
    outputs = _head_outputs(model, model.norm(x))
    outputs["layer_cls"] = torch.stack([taps[k] for k in wanted], dim=1)
    return outputs


def vit_outputs(model: VisionTransformer, images: torch.Tensor, layers: tuple[int, ...],
                tap: str) -> dict[str, torch.Tensor]:
    """``cls_at_layers`` when ``layers`` is non-empty, else only ``logits`` and ``feature`` (timm's own
    ``forward_features``)."""
    if layers:
        return cls_at_layers(model, images, layers, tap)
    return _head_outputs(model, model.forward_features(images))
