"""P(live) and a live/spoof decision for image files, from any runnable export or a training checkpoint."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from fasd.constants import CLASS_NAMES, LABEL_LIVE, LABEL_SPOOF
from fasd.data.image_io import decode_image
from fasd.data.source import UnreadableFrame
from fasd.errors import FasdError
from fasd.export.runtimes import load_scorer
from fasd.training.transforms import eval_transform

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
DEFAULT_THRESHOLD = 0.5  # when the model carries no EER threshold
_BATCH = 64  # images decoded and scored together


def find_images(inputs: list[Path]) -> list[Path]:
    """Files as given, directories searched recursively for image suffixes (sorted), in input order,
    each file once."""
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found += sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif item.is_file():
            found.append(item)
        else:
            raise FasdError(f"image or folder not found: {item}")
    if not found:
        raise FasdError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {', '.join(map(str, inputs)) or 'no inputs'}; "
                        "pass image files or folders that hold them")
    return list(dict.fromkeys(found))


def _batches(paths: list[Path]) -> Iterator[tuple[list[Path], np.ndarray]]:
    transform = eval_transform()
    for start in range(0, len(paths), _BATCH):
        chunk = paths[start:start + _BATCH]
        yield chunk, torch.stack([transform(_read(path)) for path in chunk]).numpy()


def _read(path: Path) -> np.ndarray:
    try:
        return decode_image(path)
    except UnreadableFrame as exc:
        raise FasdError(f"cannot read image {exc}; pass PNG, JPEG, BMP or WebP files") from None


def predict_paths(model: Path, inputs: list[Path], threshold: float | None = None) -> list[dict]:
    """One row per image: path, p_live, decision ('live' when p_live >= threshold, else 'spoof'), threshold.

    ``threshold`` None: the model's EER threshold when its metadata has one, else 0.5.
    An unreadable image is a FasdError naming it (nothing is silently skipped).
    """
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise FasdError(f"--threshold must be in [0, 1], got {threshold}")
    scorer = load_scorer(model)
    if threshold is None:
        threshold = float(scorer.metadata.get("eer_threshold", DEFAULT_THRESHOLD))
    rows = []
    for paths, images in _batches(find_images(inputs)):
        for path, p in zip(paths, scorer.p_live(images).tolist()):
            label = LABEL_LIVE if p >= threshold else LABEL_SPOOF
            rows.append({"path": str(path), "p_live": p, "decision": CLASS_NAMES[label],
                         "threshold": threshold})
    return rows


def format_predictions(rows: list[dict]) -> str:
    """A table: path, P(live), decision; then the threshold(s) used."""
    width = max([len("path"), *(len(row["path"]) for row in rows)])
    lines = [f"{'path':<{width}}  P(live)  decision"]
    lines += [f"{row['path']:<{width}}  {row['p_live']:7.4f}  {row['decision']}" for row in rows]
    thresholds = ", ".join(f"{t:.4f}" for t in sorted({row["threshold"] for row in rows}))
    lines.append(f"live when P(live) >= {thresholds}")
    return "\n".join(lines)
