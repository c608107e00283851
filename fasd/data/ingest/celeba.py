"""CelebA-Spoof: ``Data/{train,test}/<subject>/{live,spoof}/<id>.jpg|png`` with ``<id>_BB.txt`` boxes.

Labels come from ``metas/intra_test/{train,test}_label.json`` (image path relative to the root ->
44 ints): label = 1 - entry[43] (entry[43] is 1 for spoof), attack_type = SPOOF_TYPES[entry[40]].
The box file holds ``x y w h score`` in a 224 x 224 frame of reference, scaled to the image by
width/224 and height/224; square crop around it with the margin (see ``geometry``).
CelebA-Spoof has no validation split: VAL_PERCENT % of the train subjects (by a CRC32 of the subject
id, so the same on every machine and run) become ``val``. video_id = subject.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from fasd.data.ingest.geometry import box_crop, box_policy
from fasd.data.ingest.items import ImageGroup
from fasd.data.ingest.plan import FrameMeta, IngestOptions, ItemSkipped, Plan, Skip, register_layout
from fasd.data.ingest.readers import read_rows
from fasd.data.source import VAL_PERCENT, in_val_share  # noqa: F401  (VAL_PERCENT: named in the docstring)
from fasd.errors import FasdError

SPOOF_TYPES = ("", "photo", "poster", "A4", "face_mask", "upper_body_mask", "region_mask", "pc", "pad",
               "phone", "3d_mask")
ENTRY_LENGTH = 44
SPOOF_TYPE_INDEX, SPOOF_FLAG_INDEX = 40, 43
BOX_REFERENCE = 224
LABEL_FILES = {"train": "metas/intra_test/train_label.json", "test": "metas/intra_test/test_label.json"}
LAYOUT = ("a CelebA-Spoof root: Data/{train,test}/<subject>/{live,spoof}/ images with <id>_BB.txt boxes, "
          "and metas/intra_test/{train,test}_label.json")


def is_val_subject(subject: str) -> bool:
    return in_val_share(subject)


@dataclass(frozen=True)
class CelebaSubject(ImageGroup):
    def crop(self, path: Path, image: np.ndarray) -> np.ndarray:
        rows = read_rows(path.with_name(f"{path.stem}_BB.txt"), 4, "box file")
        if not rows:
            raise ItemSkipped("empty box file")
        x, y, w, h = rows[0]
        if w <= 0 or h <= 0:
            raise ItemSkipped("empty face box")
        height, width = image.shape[:2]
        sx, sy = width / BOX_REFERENCE, height / BOX_REFERENCE
        return box_crop(image, (x * sx, y * sy, w * sx, h * sy), self.options.margin, self.options.size)


def _meta(relative: str, entry, split: str) -> FrameMeta | None:
    parts = PurePosixPath(relative).parts
    valid = (len(parts) == 5 and isinstance(entry, list) and len(entry) == ENTRY_LENGTH
             and entry[SPOOF_FLAG_INDEX] in (0, 1) and entry[SPOOF_TYPE_INDEX] in range(len(SPOOF_TYPES)))
    if not valid:
        return None
    subject = parts[2]
    if split == "train" and is_val_subject(subject):
        split = "val"
    return FrameMeta(label=1 - entry[SPOOF_FLAG_INDEX], split=split, video_id=subject,
                     attack_type=SPOOF_TYPES[entry[SPOOF_TYPE_INDEX]])


def _labels(path: Path) -> dict:
    try:
        labels = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise FasdError(f"cannot read CelebA-Spoof labels {path}: {exc}") from None
    if not isinstance(labels, dict):
        raise FasdError(f"{path} is not a CelebA-Spoof label file (expected a JSON object of image path -> 44 ints)")
    return labels


@register_layout("celeba")
def plan(root: Path, options: IngestOptions) -> Plan:
    label_files = {split: root / name for split, name in LABEL_FILES.items() if (root / name).is_file()}
    if not (root / "Data").is_dir() or not label_files:
        raise FasdError(f"{root} is not {LAYOUT}")
    groups: dict[tuple[str, str], list[tuple[str, FrameMeta]]] = {}
    skipped, seen = [], 0
    for split, path in label_files.items():
        for relative, entry in sorted(_labels(path).items()):
            seen += 1
            meta = _meta(relative, entry, split)
            if meta is None:
                skipped.append(Skip(relative, "malformed label entry (expected Data/<set>/<subject>/<class>/<id> "
                                              "-> 44 ints)"))
            else:
                groups.setdefault((split, meta.video_id), []).append((relative, meta))
    items = [CelebaSubject(f"Data/{split}/{subject}", root, tuple(entries), options)
             for (split, subject), entries in groups.items()]
    return Plan("images", box_policy(options.margin, options.size), items, seen=seen, skipped=skipped)
