"""Whether a state dict fits a module, in words: one line naming the first key that does not fit (never torch's
multi-line "Error(s) in loading state_dict for ...")."""

from __future__ import annotations

import torch
from torch import nn

from fasd.errors import FasdError


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def state_mismatch(model: nn.Module, state: dict[str, torch.Tensor]) -> str | None:
    """The first difference between ``model``'s state dict and ``state`` in words, or None if it fits:
    a missing key, then an unexpected key, then a shape mismatch (in the model's key order)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        return f"missing key '{missing[0]}' {tuple(expected[missing[0]].shape)}{more}"
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        found = state[unexpected[0]]
        shape = f" {tuple(found.shape)}" if isinstance(found, torch.Tensor) else ""
        return f"unexpected key '{unexpected[0]}'{shape}{more}"
    for key, tensor in expected.items():
        found = state[key]
        if not isinstance(found, torch.Tensor):
            return f"'{key}' is a {type(found).__name__}, not a tensor"
        if tuple(found.shape) != tuple(tensor.shape):
            return f"'{key}' has shape {tuple(found.shape)}, the model expects {tuple(tensor.shape)}"
    return None


def check_state_fits(model: nn.Module, state: dict[str, torch.Tensor], what: str, hint: str) -> None:
    """Load ``state`` into ``model`` strictly; any mismatch is one FasdError line naming the first one.

    ``what`` names the checkpoint in the message (e.g. its path), ``hint`` says what to do.
    """
    problem = state_mismatch(model, state)
    if problem is None:
        try:
            model.load_state_dict(state, strict=True)
            return
        except RuntimeError as exc:  # e.g. a dtype torch cannot copy
            problem = _first_line(exc)
    raise FasdError(f"{what} does not fit the model: {problem}; {hint}")
