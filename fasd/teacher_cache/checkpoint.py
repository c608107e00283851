"""Load teacher checkpoints: FLIP's training checkpoints or plain OpenAI-format CLIP state dicts.

FLIP saves ``torch.save({'epoch': ..., 'state_dict': {'model.<OpenAI CLIP key>': ..., 'image_mlp.*': ...}})``
with fp16 CLIP tensors and numpy scalars beside them. Loading uses ``weights_only=True`` with numpy's
scalar types allow-listed; ``trust=True`` (``--trust-checkpoint``) allows arbitrary pickles.
"""

from __future__ import annotations

import hashlib
import pickle
import re
import zipfile
from pathlib import Path

import numpy as np
import torch

from fasd.errors import FasdError

# Keys of an OpenAI-format CLIP state dict (ViT image tower); everything else (heads) is dropped.
CLIP_KEY_PREFIXES = ("visual.", "transformer.", "token_embedding.", "positional_embedding", "ln_final.",
                     "text_projection", "logit_scale")
REQUIRED_KEYS = ("visual.conv1.weight", "visual.proj", "visual.positional_embedding", "text_projection",
                 "token_embedding.weight", "positional_embedding", "ln_final.weight", "logit_scale")
FLIP_PREFIX = "model."


def _numpy_safe_globals() -> list:
    """numpy types that FLIP's checkpoints pickle beside the weights (epoch numbers, metrics)."""
    core = getattr(np, "_core", None) or np.core
    kinds = [core.multiarray.scalar, np.dtype, core.multiarray._reconstruct, np.ndarray]
    kinds += [type(np.dtype(code)) for code in "?bhilqBHILQefdgFDG"]
    return kinds


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_checkpoint(path: str | Path, trust: bool = False) -> object:
    path = Path(path)
    if not path.is_file():
        raise FasdError(f"checkpoint not found: {path}")
    if not trust and not zipfile.is_zipfile(path):
        raise FasdError(f"{path} is not a readable torch checkpoint (not a torch.save archive)")
    try:
        if trust:
            return torch.load(path, map_location="cpu", weights_only=False)
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        what = found.group(1) if found else "non-tensor objects"
        raise FasdError(f"{path} holds objects that are not plain weights ({what}); "
                        f"if you trust the file, pass --trust-checkpoint") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FasdError(f"{path} is not a readable torch checkpoint ({first})") from None


def clip_state_dict(raw: object, path: str | Path) -> dict[str, torch.Tensor]:
    """Extract an OpenAI-format CLIP ViT state dict from a FLIP checkpoint or a plain state dict."""
    if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict):
        raise FasdError(f"{path} does not hold a state dict (found {type(raw).__name__}); expected a FLIP "
                        f"checkpoint {{'state_dict': {{'model.visual...': ...}}}} or an OpenAI CLIP state dict")
    if any(k.startswith(FLIP_PREFIX) for k in raw):
        raw = {k[len(FLIP_PREFIX):]: v for k, v in raw.items() if k.startswith(FLIP_PREFIX)}
    state = {k: v for k, v in raw.items() if k.startswith(CLIP_KEY_PREFIXES) and isinstance(v, torch.Tensor)}
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise FasdError(f"{path} is not a CLIP ViT checkpoint: missing {', '.join(missing[:4])}; expected "
                        f"OpenAI-format keys (visual.*, transformer.*, ...) optionally prefixed with 'model.'")
    return state
