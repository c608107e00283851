"""Reading raw media and annotation files; every failure becomes ItemSkipped with a reason.

PyAV is imported lazily so fasd works without the ``ingest`` extra until a video is decoded.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from fasd.data.ingest.plan import ItemSkipped
from fasd.errors import FasdError

_FIELD_SEPARATOR = re.compile(r"[,\s]+")


def require_av():
    try:
        import av
    except ImportError:
        raise FasdError("decoding videos needs PyAV: install fasd[ingest] (pip install 'fasd[ingest]')") from None
    return av


def decode_frames(path: Path, wanted: Collection[int]) -> Iterator[tuple[int, np.ndarray]]:
    """``(index, RGB uint8 frame)`` for each frame of ``path`` whose 0-based decode index is in
    ``wanted``, one at a time (full-resolution frames are never held together). Decoding stops after
    the last wanted frame; indices past the end of the video are not yielded."""
    av = require_av()
    wanted = set(wanted)
    last = max(wanted, default=-1)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ItemSkipped("unreadable video", "no video stream")
            for index, frame in enumerate(container.decode(video=0)):
                if index > last:
                    break
                if index in wanted:
                    yield index, frame.to_ndarray(format="rgb24")
    except av.error.FFmpegError as exc:
        raise ItemSkipped("unreadable video", str(exc)) from None


def read_image(path: Path) -> np.ndarray:
    """(H, W, 3) uint8. A 16-bit or 32-bit single-channel image (e.g. a depth map in millimetres) is scaled by its
    own maximum to 0..255 (PIL's convert("RGB") would clip every value above 255 to white)."""
    if not path.is_file():
        raise ItemSkipped("image missing")
    try:
        with Image.open(path) as image:
            if image.mode.startswith("I") or image.mode == "F":
                values = np.asarray(image, dtype=np.float64)
                peak = values.max() if values.size and np.isfinite(values).all() else 0.0
                scaled = np.zeros(values.shape, np.uint8) if peak <= 0 else \
                    (np.clip(values, 0, None) * (255.0 / peak) + 0.5).astype(np.uint8)
                return np.repeat(scaled[..., None], 3, axis=-1)
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise ItemSkipped("unreadable image", str(exc)) from None


def read_rows(path: Path, columns: int, what: str) -> list[tuple[float, ...]]:
    """Numeric rows of a comma- or whitespace-separated annotation file, the first ``columns`` of each.

    A missing file raises ItemSkipped("no <what>"); a malformed line raises ItemSkipped("unreadable <what>").
    """
    if not path.is_file():
        raise ItemSkipped(f"no {what}", path.name)
    rows = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        fields = _FIELD_SEPARATOR.split(line.strip())
        try:
            if len(fields) < columns:
                raise ValueError(f"{len(fields)} fields, expected {columns}")
            rows.append(tuple(float(value) for value in fields[:columns]))
        except ValueError as exc:
            raise ItemSkipped(f"unreadable {what}", f"{path.name} line {number}: {exc}") from None
    return rows
