"""Randomly initialised CLIPs by open_clip architecture name, including fasd's tiny CPU config.

``fasd-tiny-clip`` (shipped beside this file) is a 3-layer, 128-wide ViT/32 that fine-tunes and caches
in minutes on a laptop CPU; its state dict has the same OpenAI-format keys as ViT-B/16, so every code
path (checkpoint loading, caching, verification) is the one ViT-B/16 takes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import open_clip
import torch

from fasd.errors import FasdError

TINY_ARCH = "fasd-tiny-clip"
_CONFIG_DIR = Path(__file__).parent


def available_archs() -> list[str]:
    open_clip.add_model_config(_CONFIG_DIR)
    return [name for name in open_clip.list_models() if not name.startswith(("RN", "convnext", "coca"))]


def random_clip(arch: str, seed: int = 0) -> open_clip.model.CLIP:
    """A randomly initialised OpenAI-layout (QuickGELU) CLIP; no weights are downloaded."""
    open_clip.add_model_config(_CONFIG_DIR)
    if arch not in open_clip.list_models():
        raise FasdError(f"unknown --arch '{arch}'; try {TINY_ARCH}, ViT-B-16 or ViT-B-32 "
                        f"(any open_clip ViT config name)")
    torch.manual_seed(seed)
    logging.disable(logging.WARNING)  # open_clip warns that no pretrained weights were loaded: intended
    try:
        model = open_clip.create_model(arch, pretrained=None, force_quick_gelu=True)
    finally:
        logging.disable(logging.NOTSET)
    if not hasattr(model, "visual") or not hasattr(model.visual, "conv1"):
        raise FasdError(f"--arch {arch} is not a CLIP ViT; fasd teachers are ViT CLIPs")
    return model.eval()


def openai_state_dict(model: open_clip.model.CLIP) -> dict[str, torch.Tensor]:
    """open_clip's CLIP uses OpenAI's key names, so its state dict is already in OpenAI format."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
