"""Frames of one or several domains as the training and evaluation loops read them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch.utils.data import Dataset

from fasd.data.source import FrameSource
from fasd.training.transforms import StudentTransform


@dataclass
class DomainRows:
    """The rows of one domain's frame source used in a stream."""

    source: FrameSource
    rows: np.ndarray  # source rows


class EvalFrames(Dataset):
    """Item i -> (image, i) for scoring one source's rows with the evaluation transform."""

    def __init__(self, source: FrameSource, rows: np.ndarray, transform: StudentTransform):
        self.source, self.rows, self.transform = source, rows, transform

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int):
        return self.transform(self.source.read_image(int(self.rows[index]))), index
