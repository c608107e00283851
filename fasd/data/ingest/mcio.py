"""``fasd ingest mcio``: FLIP/MCIO frame folders (read by ``fasd.data.mcio.scan_mcio``) into a pack.

The frames are already face crops (224 x 224, MTCNN-aligned), so each is only cut to its largest
centred square and resized; margin is not used.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

import numpy as np

from fasd.data.ingest.geometry import centre_crop, centre_policy
from fasd.data.ingest.items import ImageGroup
from fasd.data.ingest.plan import FrameMeta, IngestOptions, Plan, register_layout
from fasd.data.mcio import scan_mcio

CHUNK = 256  # images per work item


@dataclass(frozen=True)
class FrameChunk(ImageGroup):
    def crop(self, path: Path, image: np.ndarray) -> np.ndarray:
        return centre_crop(image, self.options.size)


@register_layout("mcio")
def plan(root: Path, options: IngestOptions) -> Plan:
    frames = scan_mcio(root)
    items = []
    for folder, group in groupby(frames, key=lambda f: f.relative.rsplit("/", 1)[0]):
        entries = [(f.relative, FrameMeta(label=f.label, split=f.split, video_id=f.video_id, attack_type=""))
                   for f in group]
        items += [FrameChunk(f"{folder}[{start}:]", root, tuple(entries[start:start + CHUNK]), options)
                  for start in range(0, len(entries), CHUNK)]
    return Plan("images", centre_policy(options.size), items, seen=len(frames))
