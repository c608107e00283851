"""P(live) and a live/spoof decision for image files, from any runnable export or a training checkpoint."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from fasd.constants import CLASS_NAMES, LABEL_LIVE, LABEL_SPOOF, MODALITIES, STUDENT_INPUT_SIZE
from fasd.data.image_io import decode_image
from fasd.data.source import UnreadableFrame
from fasd.errors import FasdError
from fasd.evaluate.metrics import stored_val_threshold
from fasd.export.metadata import SINGLE_INPUT, modalities_of
from fasd.export.runtimes import load_scorer
from fasd.training.modalities import modality_eval_transform
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


def _batches(paths: list[Path], modalities: tuple[str, ...] = SINGLE_INPUT,
             folders: dict[str, Path] | None = None,
             size: int = STUDENT_INPUT_SIZE) -> Iterator[tuple[list[Path], np.ndarray]]:
    """Normalised batches at the model's input ``size``; a multimodal model gets (N, M, 3, S, S) stacks (see
    _frame)."""
    single = tuple(modalities) == SINGLE_INPUT
    transform = eval_transform(size) if single else modality_eval_transform()
    read = _read if single else (lambda path: _frame(path, folders or {}))
    for start in range(0, len(paths), _BATCH):
        chunk = paths[start:start + _BATCH]
        yield chunk, torch.stack([transform(read(path)) for path in chunk]).numpy()


def _frame(path: Path, folders: dict[str, Path]) -> dict[str, np.ndarray]:
    """An RGB image and, for every other modality, the file of the same name in its folder (``--depth DIR``,
    ``--ir DIR``); no folder or no such file: that modality is missing, the all-zero frame."""
    rgb = _read(path)
    frame = {"rgb": rgb, "mask": np.ones(len(MODALITIES), dtype=bool)}
    for index, name in enumerate(MODALITIES[1:], start=1):
        other = folders.get(name)
        found = other is not None and (other / path.name).is_file()
        frame[name] = _read(other / path.name) if found else np.zeros_like(rgb)
        frame["mask"][index] = found
    return frame


def _read(path: Path) -> np.ndarray:
    try:
        return decode_image(path)
    except UnreadableFrame as exc:
        raise FasdError(f"cannot read image {exc}; pass PNG, JPEG, BMP or WebP files") from None


def predict_paths(model: Path, inputs: list[Path], threshold: float | None = None,
                  folders: dict[str, Path] | None = None) -> list[dict]:
    """One row per image: path, p_live, decision ('live' when p_live >= threshold, else 'spoof'), threshold.

    ``threshold`` None: the model's validation threshold when its metadata has one, else 0.5.
    ``folders``: a multimodal model's other modalities, {modality: folder} (files matched by name).
    An unreadable image is a FasdError naming it (nothing is silently skipped).
    """
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise FasdError(f"--threshold must be in [0, 1], got {threshold}")
    folders = {name: Path(folder) for name, folder in (folders or {}).items() if folder is not None}
    for name, folder in folders.items():
        if not folder.is_dir():
            raise FasdError(f"--{name} {folder} is not a folder")
    scorer = load_scorer(model)
    modalities = modalities_of(scorer.metadata)
    if folders and tuple(modalities) == SINGLE_INPUT:
        raise FasdError(f"--{'/--'.join(folders)}: {model} takes RGB only; pass a multimodal student")
    if threshold is None:
        stored = stored_val_threshold(scorer.metadata)
        threshold = DEFAULT_THRESHOLD if stored is None else stored
    rows = []
    for paths, images in _batches(find_images(inputs), modalities, folders, scorer.metadata["input_size"]):
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
