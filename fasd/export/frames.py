"""Real frames of a registered dataset for export: calibration (int8) and the parity check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fasd.errors import FasdError
from fasd.constants import STUDENT_INPUT_SIZE
from fasd.export.metadata import SINGLE_INPUT
from fasd.training.modalities import modality_eval_transform
from fasd.training.transforms import eval_transform

FRAME_SEED = 0  # which frames a split contributes is fixed, so exports are reproducible


def dataset_frames(spec: str, count: int, default_split: str, config: Path | None = None,
                   flag: str = "--calibrate", modalities: tuple[str, ...] = SINGLE_INPUT,
                   size: int = STUDENT_INPUT_SIZE) -> tuple[np.ndarray, str]:
    """``count`` frames (or all, if fewer) drawn without replacement from ``DATASET[:SPLIT]`` of the
    registry, as eval_transform produces them (every modality stacked, N x M x 3 x S x S, for a multimodal
    student); and a description such as "64 frames of alpha/train"."""
    from fasd.config import load_registry
    from fasd.constants import SPLITS
    from fasd.data.open_source import open_source

    if count < 1:
        raise FasdError(f"the number of frames for {flag} must be >= 1, got {count}")
    name, _, split = spec.partition(":")
    split = split or default_split
    if not name or split not in SPLITS:
        raise FasdError(f"{flag} {spec}: pass DATASET[:SPLIT] with SPLIT one of {', '.join(SPLITS)}")
    source = open_source(load_registry(config).dataset(name))
    rows = source.table.rows_in_splits([split])
    if len(rows) == 0:
        raise FasdError(f"{flag} {spec}: dataset '{name}' has no frames in split '{split}'")
    picked = np.sort(np.random.default_rng(FRAME_SEED).choice(rows, size=min(count, len(rows)), replace=False))
    if tuple(modalities) == SINGLE_INPUT:
        transform, read = eval_transform(size), source.read_image
    else:
        transform, read = modality_eval_transform(), source.read_modalities
    frames = torch.stack([transform(read(int(row))) for row in picked]).numpy()
    return frames, f"{len(picked)} frames of {name}/{split}"


def random_frames(count: int, modalities: tuple[str, ...] = SINGLE_INPUT,
                  size: int = STUDENT_INPUT_SIZE) -> tuple[np.ndarray, str]:
    """Standard-normal inputs: the parity check's fallback when no dataset is named."""
    shape = (3, size, size) if tuple(modalities) == SINGLE_INPUT else (len(modalities), 3, size, size)
    frames = np.random.default_rng(FRAME_SEED).standard_normal((count, *shape), dtype=np.float32)
    return frames, f"{count} random standard-normal inputs (no --parity-data dataset named)"
