"""Prompt ensembles and the class centroids the teacher scores images against."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from fasd.constants import CLASS_NAMES, FLIP_LIVE_PROMPTS, FLIP_SPOOF_PROMPTS
from fasd.errors import FasdError

CENTROID_MODES = ("flip", "clip")


def default_prompts() -> dict[str, list[str]]:
    return {"spoof": list(FLIP_SPOOF_PROMPTS), "live": list(FLIP_LIVE_PROMPTS)}


def load_prompts(path: str | Path | None, flag: str = "--prompts") -> dict[str, list[str]]:
    """FLIP's ensemble, or a JSON file ``{"spoof": [...], "live": [...]}`` (``flag`` names it in errors)."""
    if path is None:
        return default_prompts()
    path = Path(path)
    shape = '{"spoof": [sentences...], "live": [sentences...]}'
    try:
        prompts = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise FasdError(f"{flag} {path} is not a UTF-8 text file; give a JSON file {shape}") from None
    except OSError as exc:
        raise FasdError(f"cannot read {flag} {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise FasdError(f"{flag} {path} is not valid JSON ({exc}); give a JSON file {shape}") from None
    if not (isinstance(prompts, dict) and all(isinstance(prompts.get(c), list) and prompts[c]
                                              and all(isinstance(p, str) for p in prompts[c])
                                              for c in CLASS_NAMES)):
        raise FasdError(f"{flag} {path} must be JSON {shape}")
    return {c: list(prompts[c]) for c in CLASS_NAMES}


def centroids_from_embeddings(per_class: list[torch.Tensor], mode: str) -> torch.Tensor:
    """(2, D) unit-norm centroids, row 0 spoof, row 1 live.

    ``flip``: mean of the raw text embeddings, then L2-normalise (FLIP's evaluation).
    ``clip``: L2-normalise each embedding, average, re-normalise (CLIP zero-shot ensembling).
    """
    if mode not in CENTROID_MODES:
        raise FasdError(f"unknown centroid mode '{mode}'; valid: {', '.join(CENTROID_MODES)}")
    rows = []
    for embeddings in per_class:
        embeddings = embeddings.float()
        if mode == "clip":
            embeddings = F.normalize(embeddings, dim=-1)
        rows.append(F.normalize(embeddings.mean(dim=0), dim=-1))
    return torch.stack(rows)
