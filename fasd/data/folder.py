"""Image folder described by a manifest CSV: ``frame_id,path,label,split[,video_id,attack_type]``.

Image paths in the manifest are relative to the folder that holds the CSV (absolute paths work too).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from fasd.constants import LABEL_LIVE, LABEL_SPOOF, SPLITS
from fasd.data.image_io import decode_image
from fasd.data.source import FrameSource, FrameTable, UnreadableFrame
from fasd.errors import FasdError

REQUIRED_COLUMNS = ("frame_id", "path", "label", "split")
OPTIONAL_COLUMNS = ("video_id", "attack_type")
LABELS = {str(LABEL_SPOOF): LABEL_SPOOF, str(LABEL_LIVE): LABEL_LIVE}


class FolderFrameSource(FrameSource):
    format = "folder"

    def __init__(self, manifest: str | Path, name: str | None = None):
        self.path = Path(manifest)
        if not self.path.is_file():
            raise FasdError(f"manifest CSV not found: {self.path} (expected columns "
                            f"{','.join(REQUIRED_COLUMNS)}[,{','.join(OPTIONAL_COLUMNS)}])")
        self.name = name or self.path.parent.name
        columns = _parse_manifest(self.path)
        base = self.path.parent
        self._paths = [str(base / p) for p in columns.pop("path")]
        self.table = FrameTable(
            frame_id=np.array(columns["frame_id"], dtype=str),
            label=np.array([LABELS[v] for v in columns["label"]], dtype=np.int8),
            split=np.array(columns["split"], dtype=str),
            video_id=np.array(columns["video_id"], dtype=str),
            attack_type=np.array(columns["attack_type"], dtype=str))

    def read_image(self, row: int) -> np.ndarray:
        try:
            return decode_image(self._paths[row])
        except UnreadableFrame as exc:
            raise UnreadableFrame(f"{self.table.frame_id[row]}: {exc}") from None


def _parse_manifest(path: Path) -> dict[str, list[str]]:
    """Validate the manifest line by line; every problem names the file and line to fix."""
    try:
        return _read_manifest(path)
    except UnicodeDecodeError as exc:
        raise FasdError(f"{path}: the manifest is not UTF-8 text (byte {exc.start}); save it as UTF-8 CSV") from None
    except csv.Error as exc:
        raise FasdError(f"{path}: not a readable CSV manifest ({exc})") from None
    except OSError as exc:
        raise FasdError(f"cannot read {path}: {exc.strerror or exc}") from None


def _read_manifest(path: Path) -> dict[str, list[str]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise FasdError(f"{path}:1: manifest header lacks column(s) {', '.join(missing)}; "
                            f"expected {','.join(REQUIRED_COLUMNS)}[,{','.join(OPTIONAL_COLUMNS)}]")
        reader.fieldnames = header
        columns: dict[str, list[str]] = {c: [] for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)}
        seen: set[str] = set()
        for record in reader:
            where = f"{path}:{reader.line_num}"
            values = {c: (record.get(c) or "").strip() for c in columns}
            if not values["frame_id"] or not values["path"]:
                raise FasdError(f"{where}: frame_id and path must not be empty")
            if values["frame_id"] in seen:
                raise FasdError(f"{where}: duplicate frame_id '{values['frame_id']}'; frame IDs must be unique")
            if values["label"] not in LABELS:
                raise FasdError(f"{where}: label '{values['label']}' must be {LABEL_SPOOF} (spoof) "
                                f"or {LABEL_LIVE} (live)")
            if values["split"] not in SPLITS:
                raise FasdError(f"{where}: split '{values['split']}' must be one of {', '.join(SPLITS)}")
            seen.add(values["frame_id"])
            for column, value in values.items():
                columns[column].append(value)
    if not seen:
        raise FasdError(f"{path}: manifest has a header but no frames")
    return columns
