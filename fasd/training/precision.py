"""The precision policy of every forward pass fasd runs (teacher caching, fine-tuning, student training).

On CUDA: bf16 autocast where the GPU supports it (no loss scaling needed), else fp16 autocast with a
GradScaler whose state is saved with the optimiser so a resumed run continues exactly. On CPU: fp32.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype on ``device``, None for full fp32."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device) -> AbstractContextManager:
    dtype = autocast_dtype(device)
    return torch.autocast("cuda", dtype=dtype) if dtype is not None else nullcontext()


def grad_scaler(device: torch.device) -> torch.amp.GradScaler:
    """Loss scaling, enabled only for fp16 (bf16 has fp32's exponent range)."""
    return torch.amp.GradScaler("cuda", enabled=autocast_dtype(device) == torch.float16)
