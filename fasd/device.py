"""Device selection shared by the teacher job and the student trainer."""

from __future__ import annotations

import torch

from fasd.errors import FasdError


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else the CPU; an unavailable device is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise FasdError(f"unknown --device '{name}'; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FasdError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    return device
