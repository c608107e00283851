"""Write a few frames of an HDF5 frame pack as PNG files (``fasd frames``): images to try ``fasd predict`` on.

Frames are taken in pack order from one split, alternating live and spoof so a handful shows both classes.
Each file is named ``<index>_<live|spoof>_<frame_id>.png`` so the ground truth is visible beside the
prediction. A multimodal pack's frames go to ``rgb/``, ``depth/`` and ``ir/`` under the output folder, each
modality's file under the same name (what ``fasd predict RGB --depth DEPTH --ir IR`` matches); a modality a frame
lacks gets no file, which ``fasd predict`` reads as missing.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

from fasd.constants import LABEL_LIVE, LABEL_SPOOF, MODALITIES, SPLITS
from fasd.data.hdf5_pack import HDF5FrameSource
from fasd.errors import FasdError

LABEL_NAMES = {LABEL_LIVE: "live", LABEL_SPOOF: "spoof"}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def pick_rows(labels: np.ndarray, rows: np.ndarray, count: int) -> np.ndarray:
    """``count`` of ``rows`` alternating live, spoof, live, ... (in pack order) while both classes last."""
    by_class = [list(rows[labels[rows] == LABEL_LIVE]), list(rows[labels[rows] == LABEL_SPOOF])]
    picked: list[int] = []
    while len(picked) < count and (by_class[0] or by_class[1]):
        for queue in by_class:
            if queue and len(picked) < count:
                picked.append(queue.pop(0))
    return np.array(picked, dtype=np.int64)


def export_frames(pack: Path, out: Path, count: int, split: str = "test") -> list[Path]:
    """Write ``count`` frames of ``split`` from ``pack`` to ``out`` as PNG (a multimodal pack: one folder per
    modality); return the paths of every file written."""
    if count < 1:
        raise FasdError(f"--count must be at least 1, got {count}")
    if split not in SPLITS:
        raise FasdError(f"--split must be one of {', '.join(SPLITS)}, got '{split}'")
    source = HDF5FrameSource(pack)
    table = source.table
    rows = pick_rows(table.label, table.rows_in_splits([split]), count)
    if not len(rows):
        raise FasdError(f"{pack} has no frames in the '{split}' split")
    out = Path(out)
    multimodal = len(source.modalities) > 1
    folders = {m: out / m if multimodal else out for m in source.modalities}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, row in enumerate(rows):
        name = f"{index:03d}_{LABEL_NAMES[int(table.label[row])]}_{_UNSAFE.sub('_', str(table.frame_id[row]))}.png"
        frame = source.read_modalities(int(row)) if multimodal else {"rgb": source.read_image(int(row))}
        for position, modality in enumerate(MODALITIES):
            if modality in folders and (not multimodal or frame["mask"][position]):
                Image.fromarray(frame[modality]).save(folders[modality] / name)
                paths.append(folders[modality] / name)
    return paths
