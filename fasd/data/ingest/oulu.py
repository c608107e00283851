"""OULU-NPU: ``{Train,Dev,Test}_files/<Phone>_<Session>_<User>_<File>.avi`` with eye positions.

Each video has a ``.txt`` beside it, one line per frame: ``frame_index, x_right_eye, y_right_eye,
x_left_eye, y_left_eye``. Frame indices are read as 0-based decode indices (as Bob's oulunpu
interface does); lines whose two eyes coincide (e.g. all zeros) count as unannotated. The crop
is eye-anchored and roll-aligned: centre = eye midpoint + 0.35 x IOD below the eye line,
side = 2.5 x IOD x (1 + 2 x margin), rotated so the eyes are level (see ``geometry``).

Labels from File: 1 live; 2, 3 print; 4, 5 replay. Split from the folder (Train/Dev/Test ->
train/val/test) or, with a protocol, from ``Protocols/Protocol_N/{Train,Dev,Test}.txt`` (lines
``+1,1_1_01_1``); protocols 3 and 4 have six folds, chosen as ``Protocol_3/K`` (files
``Train_K.txt`` ...). With a protocol only the listed videos are ingested.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fasd.constants import LABEL_LIVE, LABEL_SPOOF
from fasd.data.ingest.geometry import eye_crop, eye_policy
from fasd.data.ingest.items import AnnotatedVideo
from fasd.data.ingest.plan import FrameMeta, IngestOptions, Plan, Skip, register_layout
from fasd.data.ingest.readers import read_rows
from fasd.errors import FasdError

SPLIT_OF_PREFIX = {"Train": "train", "Dev": "val", "Test": "test"}
ATTACK_OF_FILE = {1: "", 2: "print", 3: "print", 4: "replay", 5: "replay"}
VIDEO_NAME = re.compile(r"^\d+_\d+_\d+_(\d+)$")
PROTOCOL_NAME = re.compile(r"^(?:Protocol_)?([1-4])(?:[/_]([1-6]))?$")
LAYOUT = ("an OULU-NPU root: Train_files/, Dev_files/, Test_files/ holding <Phone>_<Session>_<User>_<File>.avi "
          "videos with their eye-position .txt files")

Eyes = tuple[tuple[float, float], tuple[float, float]]


@dataclass(frozen=True)
class OuluVideo(AnnotatedVideo):
    def read_annotations(self) -> dict[int, Eyes]:
        rows = read_rows(self.annotation, 5, "eye-position file")
        return {int(index): ((xr, yr), (xl, yl)) for index, xr, yr, xl, yl in rows if (xr, yr) != (xl, yl)}

    def crop(self, frame: np.ndarray, annotation: Eyes) -> np.ndarray:
        return eye_crop(frame, *annotation, self.options.margin, self.options.size)


@register_layout("oulu", video=True, options=("protocol",))
def plan(root: Path, options: IngestOptions) -> Plan:
    folders = {prefix: root / f"{prefix}_files" for prefix in SPLIT_OF_PREFIX}
    if not any(folder.is_dir() for folder in folders.values()):
        raise FasdError(f"{root} is not {LAYOUT}")
    on_disk = {prefix: sorted(path.stem for path in folder.glob("*.avi")) for prefix, folder in folders.items()}
    listed = _protocol_lists(root, options.protocol) if options.protocol else on_disk
    items, skipped = [], []
    for prefix, names in listed.items():
        for name in names:
            relative = f"{prefix}_files/{name}"
            match = VIDEO_NAME.match(name)
            file_kind = int(match[1]) if match else None
            video = folders[prefix] / f"{name}.avi"
            if file_kind not in ATTACK_OF_FILE:
                skipped.append(Skip(relative, "name is not <Phone>_<Session>_<User>_<File 1-5>"))
            elif not video.is_file():
                skipped.append(Skip(relative, "listed in the protocol but the video is missing"))
            else:
                meta = FrameMeta(label=LABEL_LIVE if file_kind == 1 else LABEL_SPOOF, split=SPLIT_OF_PREFIX[prefix],
                                 video_id=name, attack_type=ATTACK_OF_FILE[file_kind])
                items.append(OuluVideo(relative, video, video.with_suffix(".txt"), meta, options))
    excluded = Counter()
    if options.protocol:
        unlisted = sum(len(set(on_disk[prefix]) - set(listed[prefix])) for prefix in SPLIT_OF_PREFIX)
        if unlisted:
            excluded[f"not in protocol {options.protocol}"] = unlisted
    return Plan("videos", eye_policy(options.margin, options.size), items, seen=len(items) + len(skipped),
                skipped=skipped, excluded=excluded)


def _protocol_lists(root: Path, protocol: str) -> dict[str, list[str]]:
    """Video names per folder prefix from the protocol's Train/Dev/Test lists."""
    match = PROTOCOL_NAME.match(protocol.strip())
    if not match or (match[1] in "34") != (match[2] is not None):
        raise FasdError(f"unknown OULU-NPU protocol '{protocol}': use Protocol_1, Protocol_2, "
                        "or Protocol_3/K or Protocol_4/K with K in 1..6")
    folder = root / "Protocols" / f"Protocol_{match[1]}"
    suffix = f"_{match[2]}" if match[2] else ""
    lists = {}
    for prefix in SPLIT_OF_PREFIX:
        path = folder / f"{prefix}{suffix}.txt"
        if not path.is_file():
            raise FasdError(f"protocol list not found: {path} (expected Protocols/ from the OULU-NPU release)")
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if any("," not in line for line in lines):
            raise FasdError(f"{path} is not an OULU-NPU protocol list (lines like '+1,1_1_01_1')")
        lists[prefix] = [line.split(",", 1)[1].strip() for line in lines]
    return lists
