"""Load teacher checkpoints: FLIP's training checkpoints, plain OpenAI-format CLIP state dicts, or
OpenAI's TorchScript archives (``ViT-B-16.pt``).

FLIP saves ``torch.save({'epoch': ..., 'state_dict': {'model.<OpenAI CLIP key>': ..., 'image_mlp.*': ...},
'best_model_EER': <numpy float64>, ...})`` with fp32 CLIP tensors and numpy scalars beside them. Loading
uses ``weights_only=True`` with numpy's scalar and dtype globals allow-listed under both their numpy 1.x
names (``numpy.core.multiarray.scalar``: FLIP's published files were written under numpy 1.21) and
their numpy 2.x names; ``trust=True`` (``--trust-checkpoint``) allows arbitrary pickles. A TorchScript
archive is read with ``torch.jit.load`` (it holds TorchScript code, never pickled Python objects) and
only its ``state_dict()`` is kept.
"""

from __future__ import annotations

import hashlib
import pickle
import re
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from fasd.errors import FasdError
from fasd.state_fit import check_state_fits, state_mismatch  # noqa: F401  (their home before fasd.state_fit)

# Keys of an OpenAI-format CLIP state dict (ViT image tower); everything else (heads) is dropped.
CLIP_KEY_PREFIXES = ("visual.", "transformer.", "token_embedding.", "positional_embedding", "ln_final.",
                     "text_projection", "logit_scale")
REQUIRED_KEYS = ("visual.conv1.weight", "visual.proj", "visual.positional_embedding", "text_projection",
                 "token_embedding.weight", "positional_embedding", "ln_final.weight", "logit_scale")
FLIP_PREFIX = "model."
# numpy's pickling helpers, by the module paths numpy 1.x and 2.x write into pickles.
_NUMPY_CORE_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray")
_NUMPY_CORE_FUNCTIONS = ("scalar", "_reconstruct")


def _numpy_safe_globals() -> list:
    """numpy objects FLIP's checkpoints pickle beside the weights (epoch numbers, metrics, thresholds),
    each under every name numpy 1.x or 2.x writes for it: ``(object, "module.name")`` pairs."""
    multiarray = (getattr(np, "_core", None) or np.core).multiarray
    allowed: list = [(getattr(multiarray, func), f"{module}.{func}")
                     for module in _NUMPY_CORE_MODULES for func in _NUMPY_CORE_FUNCTIONS]
    allowed += [np.dtype, np.ndarray]
    allowed += [type(np.dtype(code)) for code in "?bhilqBHILQefdgFDGUSV"]  # numpy.dtypes.Float64DType, ...
    return allowed


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_torchscript(path: Path) -> bool:
    """True for a ``torch.jit.save`` archive (it holds compiled code and constants; torch.save's does not)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _read_torchscript(path: Path) -> dict[str, torch.Tensor]:
    try:
        with warnings.catch_warnings():  # torch.jit.load's deprecation notice is not the user's concern
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError, OSError) as exc:
        raise FasdError(f"{path} is a TorchScript archive that torch.jit.load cannot read "
                        f"({_first_line(exc)})") from None
    return dict(module.state_dict())


def read_checkpoint(path: str | Path, trust: bool = False) -> object:
    """The unpickled checkpoint, or a TorchScript archive's state dict."""
    path = Path(path)
    if not path.is_file():
        raise FasdError(f"checkpoint not found: {path}" + (" (it is a directory)" if path.is_dir() else ""))
    if not zipfile.is_zipfile(path):
        if not trust:
            raise FasdError(f"{path} is not a readable torch checkpoint (not a torch.save archive)")
    elif is_torchscript(path):
        return _read_torchscript(path)
    try:
        if trust:
            return torch.load(path, map_location="cpu", weights_only=False)
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found is None and not trust:
            raise FasdError(f"{path} is not a readable torch checkpoint ({_first_line(exc)})") from None
        what = found.group(1) if found else "non-tensor objects"
        raise FasdError(f"{path} holds objects that are not plain weights ({what}); "
                        f"if you trust the file, pass --trust-checkpoint") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, KeyError, AttributeError,
            ImportError, TypeError, IndexError) as exc:
        raise FasdError(f"{path} is not a readable torch checkpoint ({_first_line(exc)})") from None


def clip_state_dict(raw: object, path: str | Path) -> dict[str, torch.Tensor]:
    """Extract an OpenAI-format CLIP ViT state dict from a FLIP checkpoint, a plain state dict or the
    state of OpenAI's TorchScript archive (whose ``input_resolution``/``context_length``/``vocab_size``
    entries are dropped like every other non-CLIP key)."""
    if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict):
        raise FasdError(f"{path} does not hold a state dict (found {type(raw).__name__}); expected a FLIP "
                        f"checkpoint {{'state_dict': {{'model.visual...': ...}}}} or an OpenAI CLIP state dict")
    if any(isinstance(k, str) and k.startswith(FLIP_PREFIX) for k in raw):
        raw = {k[len(FLIP_PREFIX):]: v for k, v in raw.items() if k.startswith(FLIP_PREFIX)}
    state = {k: v for k, v in raw.items()
             if isinstance(k, str) and k.startswith(CLIP_KEY_PREFIXES) and isinstance(v, torch.Tensor)}
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise FasdError(f"{path} is not a CLIP ViT checkpoint: missing {', '.join(missing[:4])}; expected "
                        f"OpenAI-format keys (visual.*, transformer.*, ...) optionally prefixed with 'model.'")
    return state
