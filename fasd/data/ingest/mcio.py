"""FLIP/MCIO frame folders: ``<root>/{train,val,test}/{real,fake}/*.png|jpg`` (val is optional).

The frames are already face crops (224 x 224, MTCNN-aligned), so each is only cut to its largest
centred square and resized; margin is not used. frame_id = path relative to the root without
extension; video_id = file name without the ``_frameN`` suffix; real -> live, fake -> spoof;
attack_type is unknown ('').
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fasd.constants import LABEL_LIVE, LABEL_SPOOF, SPLITS
from fasd.data.ingest.geometry import centre_crop, centre_policy
from fasd.data.ingest.items import ImageGroup
from fasd.data.ingest.plan import FrameMeta, IngestOptions, Plan, register_layout
from fasd.errors import FasdError

LABEL_OF_CLASS = {"real": LABEL_LIVE, "fake": LABEL_SPOOF}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
FRAME_SUFFIX = re.compile(r"_frame\d+$")
CHUNK = 256  # images per work item
LAYOUT = "a FLIP/MCIO frame folder: <root>/{train,test}/{real,fake}/*.png|jpg"


@dataclass(frozen=True)
class FrameChunk(ImageGroup):
    def crop(self, path: Path, image: np.ndarray) -> np.ndarray:
        return centre_crop(image, self.options.size)


@register_layout("mcio")
def plan(root: Path, options: IngestOptions) -> Plan:
    folders = [(split, name) for split in SPLITS for name in LABEL_OF_CLASS if (root / split / name).is_dir()]
    if not folders:
        raise FasdError(f"{root} is not {LAYOUT}")
    items, seen = [], 0
    for split, name in folders:
        images = sorted(path for path in (root / split / name).iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)
        seen += len(images)
        entries = [(path.relative_to(root).as_posix(),
                    FrameMeta(label=LABEL_OF_CLASS[name], split=split, video_id=FRAME_SUFFIX.sub("", path.stem),
                              attack_type="")) for path in images]
        items += [FrameChunk(f"{split}/{name}[{start}:]", root, tuple(entries[start:start + CHUNK]), options)
                  for start in range(0, len(entries), CHUNK)]
    return Plan("images", centre_policy(options.size), items, seen=seen)
