"""FLIP/MCIO frame folders: ``<root>/{train,test}/{real,fake}/*.png|jpg``, or ``<root>/{real,fake}/*``.

The second (celeb-style) layout has no split folder; its frames are all ``test``. frame_id is the path
relative to the root without extension; video_id is the frame_id with a trailing ``_frameN`` removed
(FLIP keeps a few frames per video as ``<video>_frame0.png``).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np

from fasd.constants import LABEL_LIVE, LABEL_SPOOF
from fasd.data.image_io import decode_image
from fasd.data.source import FrameSource, FrameTable, UnreadableFrame
from fasd.errors import FasdError

SPLIT_DIRS = ("train", "test")
CLASS_DIRS = {"real": LABEL_LIVE, "fake": LABEL_SPOOF}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
FRAME_SUFFIX = re.compile(r"_frame\d+$")
EXPECTED = ("<root>/{train,test}/{real,fake}/*.png|jpg (or <root>/{real,fake}/*.png|jpg "
            "for a dataset without a split folder)")


class MCIOFrameSource(FrameSource):
    format = "mcio"

    def __init__(self, root: str | Path, name: str | None = None):
        self.path = Path(root)
        self.name = name or self.path.name
        rows = sorted(_scan(self.path))
        ids = [frame_id for frame_id, *_ in rows]
        duplicates = sorted(i for i, n in Counter(ids).items() if n > 1)
        if duplicates:
            raise FasdError(f"{self.path}: frames {', '.join(duplicates[:3])} exist with two image "
                            "extensions; keep one file per frame")
        self._paths = [str(path) for *_, path in rows]
        self.table = FrameTable(
            frame_id=np.array(ids, dtype=str),
            label=np.array([label for _, label, _, _ in rows], dtype=np.int8),
            split=np.array([split for _, _, split, _ in rows], dtype=str),
            video_id=np.array([FRAME_SUFFIX.sub("", i) for i in ids], dtype=str),
            attack_type=np.array(["" if label == LABEL_LIVE else "spoof" for _, label, _, _ in rows],
                                 dtype=str))

    def read_image(self, row: int) -> np.ndarray:
        try:
            return decode_image(self._paths[row])
        except UnreadableFrame as exc:
            raise UnreadableFrame(f"{self.table.frame_id[row]}: {exc}") from None


def _scan(root: Path) -> list[tuple[str, int, str, Path]]:
    """(frame_id, label, split, file) for every image, from whichever of the two layouts ``root`` has."""
    if not root.is_dir():
        raise FasdError(f"MCIO frame folder not found: {root}; expected {EXPECTED}")
    split_dirs = [(s, root / s) for s in SPLIT_DIRS if (root / s).is_dir()]
    if not split_dirs and any((root / c).is_dir() for c in CLASS_DIRS):
        split_dirs = [("test", root)]
    rows = []
    for split, split_dir in split_dirs:
        for class_dir, label in CLASS_DIRS.items():
            folder = split_dir / class_dir
            if not folder.is_dir():
                continue
            for file in folder.iterdir():
                if file.is_file() and file.suffix.lower() in IMAGE_SUFFIXES:
                    frame_id = file.relative_to(root).with_suffix("").as_posix()
                    rows.append((frame_id, label, split, file))
    if not rows:
        raise FasdError(f"{root} holds no images in the FLIP/MCIO layout; expected {EXPECTED}")
    return rows
