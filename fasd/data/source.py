"""One reader interface with random access by row over every frame source."""

from __future__ import annotations

import hashlib
import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from fasd.constants import MODALITIES
from fasd.faces.policy import CropPolicy


class UnreadableFrame(Exception):
    """A single frame could not be decoded; the cache job reports and counts these."""


@dataclass
class FrameTable:
    """Per-frame metadata, one entry per row. Labels: 0 = spoof, 1 = live."""

    frame_id: np.ndarray  # (N,) str
    label: np.ndarray  # (N,) int8
    split: np.ndarray  # (N,) str
    video_id: np.ndarray  # (N,) str ('' where unknown)
    attack_type: np.ndarray  # (N,) str ('' for live or unknown)

    def __len__(self) -> int:
        return len(self.frame_id)

    def rows_in_splits(self, splits: list[str] | tuple[str, ...]) -> np.ndarray:
        return np.flatnonzero(np.isin(self.split, list(splits)))

    def ids_hash(self) -> str:
        digest = hashlib.sha256()
        for frame_id in self.frame_id:
            digest.update(str(frame_id).encode())
            digest.update(b"\0")
        return digest.hexdigest()


def modality_mask(present: Iterable[str]) -> np.ndarray:
    """(len(MODALITIES),) bool: which of rgb, depth, ir are in ``present``."""
    present = set(present)
    return np.array([name in present for name in MODALITIES], dtype=bool)


RGB_ONLY = modality_mask(("rgb",))
# A dataset without a validation split (CelebA-Spoof, an MCIO folder without val/) gives VAL_PERCENT % of its
# train videos or subjects to val, by a CRC32 of their id: the same on every machine and run.
VAL_PERCENT = 10


def in_val_share(key: str) -> bool:
    """Whether the train video or subject ``key`` becomes validation data (see VAL_PERCENT)."""
    return zlib.crc32(key.encode()) % 100 < VAL_PERCENT


class FrameSource(ABC):
    """A dataset's frames with random access by row. Images are uint8 RGB arrays (H, W, 3).

    ``modalities`` names the modalities the source holds (a subset of MODALITIES, in that order); a
    source of RGB frames only keeps the default ("rgb",) and inherits ``read_modalities``.
    """

    name: str
    format: str
    path: str
    table: FrameTable
    modalities: tuple[str, ...] = ("rgb",)
    crop_policy: CropPolicy | None = None  # how its frames were cropped from camera frames, when fasd did it

    def __len__(self) -> int:
        return len(self.table)

    @abstractmethod
    def read_image(self, row: int) -> np.ndarray:
        """Decode frame ``row``'s RGB image; raise UnreadableFrame when it cannot be decoded."""

    def read_modalities(self, row: int) -> dict[str, np.ndarray]:
        """Every modality of MODALITIES as (H, W, 3) uint8, an absent one all zeros (the MMDG/DADM
        convention), and ``"mask"``: (len(MODALITIES),) bool, True where the frame has that modality."""
        rgb = self.read_image(row)
        return {**{name: rgb if name == "rgb" else np.zeros_like(rgb) for name in MODALITIES},
                "mask": RGB_ONLY.copy()}

    def fingerprint(self) -> dict:
        """What identifies this source's frames: a store records it and training checks it. No path: the same
        frames read from another folder, machine or mount point are the same source."""
        return {"format": self.format, "frames": len(self.table), "frame_ids_sha256": self.table.ids_hash()}
