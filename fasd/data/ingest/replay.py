"""Idiap Replay-Attack: ``{train,devel,test}/{real,attack/fixed,attack/hand}/*.mov`` with face boxes.

Boxes come from ``face-locations/<set>/<same relative path>.face`` (``frame x y width height``,
0-based frames, top-left corner); frames whose box is empty (zeros) are not sampled. ``enroll``
videos (face recognition enrolment, not part of the PAD protocol) are excluded. devel -> val.
attack_type = ``<attack device>_<sample type>`` from the name, e.g. ``attack_highdef_client001_
session01_highdef_photo_adverse`` -> ``highdef_photo`` (print_photo, mobile_photo, mobile_video, ...).
Square crop around the box with the margin (see ``geometry``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fasd.constants import LABEL_LIVE, LABEL_SPOOF
from fasd.data.ingest.geometry import Box, box_crop, box_policy
from fasd.data.ingest.items import AnnotatedVideo
from fasd.data.ingest.plan import FrameMeta, IngestOptions, Plan, Skip, register_layout
from fasd.data.ingest.readers import read_rows
from fasd.errors import FasdError

SPLIT_OF_SET = {"train": "train", "devel": "val", "test": "test"}
FACE_LOCATIONS = "face-locations"
LAYOUT = ("a Replay-Attack root: train/, devel/, test/ holding real/ and attack/{fixed,hand}/ .mov videos, "
          "and face-locations/ with the .face box files")


@dataclass(frozen=True)
class ReplayVideo(AnnotatedVideo):
    def read_annotations(self) -> dict[int, Box]:
        rows = read_rows(self.annotation, 5, "face-location file")
        return {int(frame): (x, y, w, h) for frame, x, y, w, h in rows if w > 0 and h > 0}

    def crop(self, frame: np.ndarray, annotation: Box) -> np.ndarray:
        return box_crop(frame, annotation, self.options.margin, self.options.size)


def attack_type(stem: str) -> str:
    """``attack_<device>_client..._<sample type>_<light>`` -> ``<device>_<sample type>``."""
    tokens = stem.split("_")
    device = tokens[1] if len(tokens) > 1 else "unknown"
    sample = next((token for token in tokens[2:] if token in ("photo", "video")), None)
    return f"{device}_{sample}" if sample else device


@register_layout("replay", video=True)
def plan(root: Path, options: IngestOptions) -> Plan:
    sets = [name for name in SPLIT_OF_SET if (root / name).is_dir()]
    if not sets:
        raise FasdError(f"{root} is not {LAYOUT}")
    if not (root / FACE_LOCATIONS).is_dir():
        raise FasdError(f"{root} has no {FACE_LOCATIONS}/ folder: Replay-Attack's face boxes are needed ({LAYOUT})")
    items, skipped, excluded = [], [], Counter()
    for set_name in sets:
        for video in sorted((root / set_name).rglob("*.mov")):
            relative = video.relative_to(root).with_suffix("")
            name = relative.as_posix()
            kind = relative.parts[1] if len(relative.parts) > 2 else ""
            if "enroll" in relative.parts or "_enroll_" in video.stem:
                excluded["enroll video"] += 1
            elif kind not in ("real", "attack"):
                skipped.append(Skip(name, "not under real/ or attack/"))
            else:
                live = kind == "real"
                meta = FrameMeta(label=LABEL_LIVE if live else LABEL_SPOOF, split=SPLIT_OF_SET[set_name],
                                 video_id=name, attack_type="" if live else attack_type(video.stem))
                annotation = root / FACE_LOCATIONS / relative.with_suffix(".face")
                items.append(ReplayVideo(name, video, annotation, meta, options))
    return Plan("videos", box_policy(options.margin, options.size), items, seen=len(items) + len(skipped),
                skipped=skipped, excluded=excluded)
