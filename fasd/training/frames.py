"""Frames of one or several domains as the training and evaluation loops read them.

A frame that cannot be decoded does not stop a loop: its item carries ``readable`` False and a blank image
(``read_or_blank``), and the loop leaves it out (scoring gives it a NaN score, training drops it from its batch).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from torch.utils.data import Dataset

from fasd.data.source import FrameSource, UnreadableFrame

Read = TypeVar("Read")
# What an unreadable frame's item is made of: every transform resizes it to the stream's size.
BLANK_IMAGE = np.zeros((1, 1, 3), dtype=np.uint8)


def read_or_blank(read: Callable[[int], Read], row: int, blank: Read) -> tuple[Read, bool]:
    """(``read(row)``, True), or (``blank``, False) when the frame cannot be decoded."""
    try:
        return read(row), True
    except UnreadableFrame:
        return blank, False


@dataclass
class DomainRows:
    """The rows of one domain's frame source used in a stream."""

    source: FrameSource
    rows: np.ndarray  # source rows


class EvalFrames(Dataset):
    """Item i -> (image, i, readable) for scoring one source's rows with the evaluation transform.

    ``read`` is what the transform takes (here the RGB image) and ``blank`` its unreadable stand-in; a multimodal
    scoring stream overrides both (fasd.training.modalities.ModalityEvalFrames)."""

    blank = BLANK_IMAGE

    def __init__(self, source: FrameSource, rows: np.ndarray, transform: Callable):
        self.source, self.rows, self.transform = source, rows, transform

    def __len__(self) -> int:
        return len(self.rows)

    def read(self, row: int):
        return self.source.read_image(row)

    def __getitem__(self, index: int):
        image, readable = read_or_blank(self.read, int(self.rows[index]), self.blank)
        return self.transform(image), index, readable
