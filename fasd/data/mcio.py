"""FLIP/MCIO frame folders, the one reader behind both ``format = "mcio"`` sources and ``fasd ingest mcio``.

Layouts: ``<root>/{train,val,test}/{real,fake}/*.png|jpg`` (any of the split folders), or the
celeb-style ``<root>/{real,fake}/*`` without a split folder, whose frames are all ``test``. A folder with
train/ but no val/ (FLIP's training layout) gives VAL_PERCENT % of its train videos (by a CRC32 of the video id,
fasd.data.source.in_val_share) to ``val``, so that it can be a training source.
frame_id is the path relative to the root without extension; video_id is the frame_id with a trailing
``_frameN`` removed (FLIP keeps a few frames per video as ``<video>_frame0.png``), so it stays unique
across split and class folders; real -> live, fake -> spoof; the attack type is unknown ('').
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import numpy as np

from fasd.constants import LABEL_LIVE, LABEL_SPOOF, SPLITS
from fasd.data.image_io import decode_image
from fasd.data.source import VAL_PERCENT, FrameSource, FrameTable, UnreadableFrame, in_val_share
from fasd.errors import FasdError, warn

CLASS_DIRS = {"real": LABEL_LIVE, "fake": LABEL_SPOOF}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
FRAME_SUFFIX = re.compile(r"_frame\d+$")
EXPECTED = ("<root>/{train,val,test}/{real,fake}/*.png|jpg (or <root>/{real,fake}/*.png|jpg "
            "for a dataset without a split folder)")


class MCIOFrame(NamedTuple):
    frame_id: str  # path relative to the root, POSIX, without extension
    relative: str  # path relative to the root, POSIX, with extension
    label: int
    split: str
    video_id: str


def scan_mcio(root: str | Path) -> list[MCIOFrame]:
    """Every image of an MCIO folder, in split (SPLITS order), class (real, fake) and file name order.

    A missing root, a folder in neither layout and one frame stored under two extensions are FasdErrors.
    """
    root = Path(root)
    if not root.is_dir():
        raise FasdError(f"MCIO frame folder not found: {root}; expected {EXPECTED}")
    split_dirs = [(s, root / s) for s in SPLITS if (root / s).is_dir()]
    if not split_dirs and any((root / c).is_dir() for c in CLASS_DIRS):
        split_dirs = [("test", root)]
    frames = []
    for split, split_dir in split_dirs:
        for class_dir, label in CLASS_DIRS.items():
            folder = split_dir / class_dir
            if not folder.is_dir():
                continue
            for file in sorted(folder.iterdir()):
                if file.suffix.lower() in IMAGE_SUFFIXES and file.is_file():
                    relative = file.relative_to(root).as_posix()
                    frame_id = relative[:-len(file.suffix)]
                    video = FRAME_SUFFIX.sub("", frame_id)
                    derive_val = split == "train" and not (root / "val").is_dir()
                    frames.append(MCIOFrame(frame_id, relative, label,
                                            "val" if derive_val and in_val_share(video) else split, video))
    if not frames:
        raise FasdError(f"{root} is not a FLIP/MCIO frame folder with images: expected {EXPECTED}")
    frames.sort(key=lambda frame: SPLITS.index(frame.split))  # stable: derived val frames after train
    duplicates = sorted(i for i, n in Counter(f.frame_id for f in frames).items() if n > 1)
    if duplicates:
        raise FasdError(f"{root}: frames {', '.join(duplicates[:3])} exist with two image extensions; "
                        "keep one file per frame")
    return frames


class MCIOFrameSource(FrameSource):
    format = "mcio"

    def __init__(self, root: str | Path, name: str | None = None):
        self.path = Path(root)
        self.name = name or self.path.name
        frames = sorted(scan_mcio(self.path))
        self._paths = [str(self.path / f.relative) for f in frames]
        self.table = FrameTable(
            frame_id=np.array([f.frame_id for f in frames], dtype=str),
            label=np.array([f.label for f in frames], dtype=np.int8),
            split=np.array([f.split for f in frames], dtype=str),
            video_id=np.array([f.video_id for f in frames], dtype=str),
            attack_type=np.full(len(frames), "", dtype=str))
        if (self.path / "train").is_dir() and not (self.path / "val").is_dir():
            val = int((self.table.split == "val").sum())
            warn(f"{self.name}: {self.path} has no val/ folder; its validation split is {val} frame(s) of the "
                 f"{VAL_PERCENT} % of train videos chosen by a CRC32 of the video id")

    def read_image(self, row: int) -> np.ndarray:
        try:
            return decode_image(self._paths[row])
        except UnreadableFrame as exc:
            raise UnreadableFrame(f"{self.table.frame_id[row]}: {exc}") from None
