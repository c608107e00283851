"""P(live) and a decision for image and video files, from any runnable export or a training checkpoint.

Two ways to read an input, chosen per model:

- **Face detection** (the default for a model whose metadata records a crop policy, i.e. one trained on packs
  of ``fasd ingest faces``; or any RGB model with ``--detector``): the file is turned upright by its EXIF tag,
  the policy's detector finds the faces, the largest is cropped exactly as the training crops were (the one
  function fasd.faces.crop.crop_face) and scored. No face is its own outcome: ``decision`` ``no-face``,
  ``p_live`` None, never a score of the frame centre. A video is scored on ``frames_per_video`` frames spread
  evenly over it; its ``p_live`` is the mean P(live) over the frames with a face, decided like one image.
- **Inputs are crops** (``--no-detect``, and the default for models without a crop policy: students trained
  on annotated datasets, synthetic data, multimodal students): each image is resized to the model's input, as
  fasd 0.2 did. Multimodal students read their depth and IR images from folders, matched by file name.

An unreadable file is one warning line and is left out; the rest is scored.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fasd.constants import CLASS_NAMES, LABEL_LIVE, LABEL_SPOOF, MODALITIES, STUDENT_INPUT_SIZE
from fasd.data.image_io import decode_image
from fasd.data.ingest.faces import IMAGE_SUFFIXES, VIDEO_SUFFIXES, read_upright, video_frames
from fasd.data.ingest.plan import ItemSkipped
from fasd.data.source import UnreadableFrame
from fasd.errors import FasdError, warn
from fasd.evaluate.metrics import stored_val_threshold
from fasd.export.metadata import SINGLE_INPUT, crop_policy_of, modalities_of
from fasd.export.runtimes import Scorer, load_scorer
from fasd.faces.detectors import DETECTORS, Detector, Found, find_face, load_detector
from fasd.faces.policy import DEFAULT_DETECTOR, CropPolicy
from fasd.training.modalities import modality_eval_transform
from fasd.training.transforms import eval_transform

DEFAULT_THRESHOLD = 0.5  # when the model carries no validation threshold
DEFAULT_FRAMES_PER_VIDEO = 16
NO_FACE = "no-face"
_BATCH = 64  # images decoded and scored together


def decision_threshold(metadata: dict, threshold: float | None = None) -> float:
    """The threshold a model decides with: ``threshold`` when the user gives one, else the one its metadata
    (or checkpoint) stores — chosen on the sources' validation split at the run's operating point — else 0.5.
    Live when P(live) >= it."""
    if threshold is not None:
        if not 0.0 <= threshold <= 1.0:
            raise FasdError(f"--threshold must be in [0, 1], got {threshold}")
        return threshold
    stored = stored_val_threshold(metadata)
    return DEFAULT_THRESHOLD if stored is None else stored


def find_inputs(inputs: list[Path], suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[Path]:
    """Files as given, directories searched recursively for ``suffixes`` (sorted), in input order, each file
    once."""
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found += sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
        elif item.is_file():
            found.append(item)
        else:
            raise FasdError(f"image or folder not found: {item}")
    if not found:
        raise FasdError(f"no images or videos ({', '.join(suffixes)}) in "
                        f"{', '.join(map(str, inputs)) or 'no inputs'}; pass files or folders that hold them")
    return list(dict.fromkeys(found))


@dataclass(frozen=True)
class FaceReader:
    """How a model wants its faces cut from full frames."""

    detector: Detector
    policy: CropPolicy
    frames_per_video: int | None = DEFAULT_FRAMES_PER_VIDEO


def face_reader(metadata: dict, no_detect: bool = False, detector: str | None = None,
                detector_weights: str | None = None,
                frames_per_video: int | None = DEFAULT_FRAMES_PER_VIDEO) -> FaceReader | None:
    """The detector and crop policy a model's inputs go through; None: its inputs are crops already.

    The model's recorded policy wins; ``detector`` swaps its detector (the boxes differ, so a warning) or, for a
    model without a policy, detects with the default policy at the model's input size."""
    if no_detect:
        if detector is not None or detector_weights is not None:
            raise FasdError("--no-detect scores the inputs as crops: drop --detector/--detector-weights")
        return None
    policy = crop_policy_of(metadata)
    if policy is None and detector is None and detector_weights is None:
        return None
    if tuple(modalities_of(metadata)) != SINGLE_INPUT:
        raise FasdError("face detection reads RGB frames; a multimodal student takes crops (drop --detector)")
    if frames_per_video is not None and frames_per_video < 1:
        raise FasdError(f"--frames-per-video must be >= 1, got {frames_per_video}")
    if policy is None:
        name = detector or DEFAULT_DETECTOR
        policy = CropPolicy(detector=name, size=int(metadata["input_size"]), align_eyes=DETECTORS.get(name).landmarks)
    elif detector is not None and detector != policy.detector:
        warn(f"the model was trained on crops from the {policy.detector} detector; {detector} draws other boxes, "
             "so its crops differ from the training crops")
        policy = policy.with_detector(detector)
    elif DETECTORS.get(policy.detector).weights and detector_weights is None:
        raise FasdError(f"the model was trained on crops from the {policy.detector} detector: pass "
                        f"--detector-weights ({DETECTORS.get(policy.detector).weights})")
    return FaceReader(load_detector(policy.detector, detector_weights), policy, frames_per_video)


def _model_input(crops: list[np.ndarray], size: int) -> np.ndarray:
    transform = eval_transform(size)
    return torch.stack([transform(crop) for crop in crops]).numpy()


class _CropWriter:
    """``--save-crops DIR``: each model input as ``<stem>[_f<frame>].png``; DIR must be new or empty (nothing of
    the user's is overwritten); two inputs of one stem get -2, -3, ..."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = None if folder is None else Path(folder)
        if self.folder is not None:
            if self.folder.exists() and (not self.folder.is_dir() or any(self.folder.iterdir())):
                raise FasdError(f"--save-crops {self.folder} exists and is not an empty folder: give a new one")
            self.folder.mkdir(parents=True, exist_ok=True)

    def write(self, crop: np.ndarray, stem: str) -> None:
        if self.folder is None:
            return
        path, copy = self.folder / f"{stem}.png", 1
        while path.exists():
            copy += 1
            path = self.folder / f"{stem}-{copy}.png"
        Image.fromarray(crop).save(path)


def _box(found: Found) -> list[float] | None:
    return None if found.face is None else [round(float(v), 2) for v in found.face.box]


def _decided(p_live: float | None, threshold: float) -> str:
    if p_live is None:
        return NO_FACE
    return CLASS_NAMES[LABEL_LIVE if p_live >= threshold else LABEL_SPOOF]


def _score_photo(path: Path, scorer: Scorer, reader: FaceReader, threshold: float, crops: _CropWriter) -> dict:
    found = find_face(read_upright(path), reader.detector, reader.policy)
    p_live = None
    if found.crop is not None:
        crops.write(found.crop, path.stem)
        p_live = float(scorer.p_live(_model_input([found.crop], int(scorer.metadata["input_size"])))[0])
    return {"path": str(path), "face": _box(found), "faces": found.count, "p_live": p_live,
            "decision": _decided(p_live, threshold), "threshold": threshold}


def _score_video(path: Path, scorer: Scorer, reader: FaceReader, threshold: float, crops: _CropWriter) -> dict:
    frames, faces = [], []
    for index, frame in video_frames(path, reader.frames_per_video):
        found = find_face(frame, reader.detector, reader.policy)
        frames.append({"frame": index, "face": _box(found), "faces": found.count, "p_live": None})
        if found.crop is not None:
            crops.write(found.crop, f"{path.stem}_f{index:05d}")
            faces.append((frames[-1], found.crop))
    if not frames:
        raise ItemSkipped("unreadable video", "no decodable frame")
    if faces:
        scores = scorer.p_live(_model_input([crop for _, crop in faces], int(scorer.metadata["input_size"])))
        for (row, _), p in zip(faces, scores.tolist()):
            row["p_live"] = p
    else:
        warn(f"{path}: no face in any of its {len(frames)} sampled frames (decision {NO_FACE})")
    for row in frames:
        row["decision"] = _decided(row["p_live"], threshold)
    p_live = float(np.mean([row["p_live"] for row, _ in faces])) if faces else None
    first = faces[0][0]["face"] if faces else None
    return {"path": str(path), "face": first, "p_live": p_live, "decision": _decided(p_live, threshold),
            "threshold": threshold, "aggregation": "mean P(live) over the frames with a face",
            "face_frames": len(faces), "frames": frames}


def _score_faces(paths: list[Path], scorer: Scorer, reader: FaceReader, threshold: float,
                 crops: _CropWriter) -> Iterator[dict]:
    for path in paths:
        video = path.suffix.lower() in VIDEO_SUFFIXES
        try:
            yield (_score_video if video else _score_photo)(path, scorer, reader, threshold, crops)
        except ItemSkipped as skip:
            warn(f"cannot read {'video' if video else 'image'} {path} ({skip.detail or skip.reason}); left out")


def _batches(paths: list[Path], modalities: tuple[str, ...] = SINGLE_INPUT,
             folders: dict[str, Path] | None = None,
             size: int = STUDENT_INPUT_SIZE) -> Iterator[tuple[list[Path], np.ndarray]]:
    """Normalised batches at the model's input ``size`` of the readable ``paths`` (an unreadable one: a warning
    line); a multimodal model gets (N, M, 3, S, S) stacks (see _frame)."""
    single = tuple(modalities) == SINGLE_INPUT
    transform = eval_transform(size) if single else modality_eval_transform()
    read = decode_image if single else (lambda path: _frame(path, folders or {}))
    for start in range(0, len(paths), _BATCH):
        chunk, images = [], []
        for path in paths[start:start + _BATCH]:
            try:
                images.append(transform(read(path)))
                chunk.append(path)
            except UnreadableFrame as exc:
                warn(f"cannot read image {exc}; left out (pass PNG, JPEG, BMP or WebP files)")
        if chunk:
            yield chunk, torch.stack(images).numpy()


def _frame(path: Path, folders: dict[str, Path]) -> dict[str, np.ndarray]:
    """An RGB image and, for every other modality, the file of the same name in its folder (``--depth DIR``,
    ``--ir DIR``); no folder or no such file: that modality is missing, the all-zero frame."""
    rgb = decode_image(path)
    frame = {"rgb": rgb, "mask": np.ones(len(MODALITIES), dtype=bool)}
    for index, name in enumerate(MODALITIES[1:], start=1):
        other = folders.get(name)
        found = other is not None and (other / path.name).is_file()
        frame[name] = decode_image(other / path.name) if found else np.zeros_like(rgb)
        frame["mask"][index] = found
    return frame


def _rgb_inputs(inputs: list[Path], folders: dict[str, Path]) -> list[Path]:
    """A multimodal model's RGB images: files under a folder named after another modality (``fasd frames`` writes
    DIR/rgb, DIR/depth, DIR/ir) or under --depth/--ir are left out, with a line; a --depth/--ir folder holding no
    file named like an RGB image is refused (every frame would be scored with that modality missing)."""
    others = {name for name in MODALITIES if name != "rgb"}
    given = [folder.resolve() for folder in folders.values()]
    searched = [Path(item).resolve() for item in inputs if Path(item).is_dir()]
    found, skipped = [], 0
    for path in find_inputs(inputs):
        resolved = path.resolve()
        base = next((folder for folder in searched if folder in resolved.parents), None)
        below = set(resolved.relative_to(base).parts[:-1]) if base is not None else set()
        if others & below or any(folder in resolved.parents for folder in given):
            skipped += 1
        else:
            found.append(path)
    if skipped:
        warn(f"left out {skipped} file(s) under folders named {'/'.join(sorted(others))} or given with --depth/--ir: "
             f"they are another modality's images, not RGB faces")
    if not found:
        raise FasdError(f"no RGB images in {', '.join(map(str, inputs))} outside the depth/ir folders; pass the "
                        f"RGB folder (e.g. DIR/rgb) and --depth DIR/depth --ir DIR/ir")
    for name, folder in folders.items():
        matched = sum((folder / path.name).is_file() for path in found)
        if matched == 0:
            raise FasdError(f"--{name} {folder} holds no file named like the RGB images (e.g. {found[0].name}); "
                            f"name each {name} image as its RGB image, extension included")
        if matched < len(found):
            warn(f"--{name} {folder} has no file for {len(found) - matched} of {len(found)} RGB image(s): those are "
                 f"scored with {name} missing")
    return found


def predict_paths(model: Path, inputs: list[Path], threshold: float | None = None,
                  folders: dict[str, Path] | None = None, no_detect: bool = False, detector: str | None = None,
                  detector_weights: str | None = None, save_crops: Path | None = None,
                  frames_per_video: int | None = DEFAULT_FRAMES_PER_VIDEO) -> list[dict]:
    """One row per readable input: path, p_live, decision, threshold (``decision_threshold``); with face
    detection (``face_reader``) also face ([x, y, w, h] in the upright image, or None), faces (how many were
    found), and for a video its frames and the aggregation. ``folders``: a multimodal model's other modalities,
    {modality: folder} (files matched by name). Unreadable inputs are warned about and left out; none readable
    is a FasdError."""
    folders = {name: Path(folder) for name, folder in (folders or {}).items() if folder is not None}
    for name, folder in folders.items():
        if not folder.is_dir():
            raise FasdError(f"--{name} {folder} is not a folder")
    if threshold is not None:
        decision_threshold({}, threshold)  # a bad --threshold fails before the model loads
    scorer = load_scorer(model)
    modalities = modalities_of(scorer.metadata)
    if folders and tuple(modalities) == SINGLE_INPUT:
        raise FasdError(f"--{'/--'.join(folders)}: {model} takes RGB only; pass a multimodal student")
    threshold = decision_threshold(scorer.metadata, threshold)
    reader = face_reader(scorer.metadata, no_detect, detector, detector_weights, frames_per_video)
    if reader is None:
        if save_crops is not None:
            raise FasdError("--save-crops writes the face crops detection makes; this model scores its inputs as "
                            "crops (its metadata has no crop policy, or --no-detect): pass --detector to detect")
        paths = find_inputs(inputs) if tuple(modalities) == SINGLE_INPUT else _rgb_inputs(inputs, folders)
        rows = [{"path": str(path), "p_live": p, "decision": _decided(p, threshold), "threshold": threshold}
                for paths, images in _batches(paths, modalities, folders,
                                              scorer.metadata["input_size"])
                for path, p in zip(paths, scorer.p_live(images).tolist())]
    else:
        rows = list(_score_faces(find_inputs(inputs, IMAGE_SUFFIXES + VIDEO_SUFFIXES), scorer, reader, threshold,
                                 _CropWriter(save_crops)))
    if not rows:
        raise FasdError(f"none of the inputs could be read ({', '.join(map(str, inputs))})")
    scored = {row["p_live"] for row in rows if row["p_live"] is not None}
    if len(scored) == 1 and sum(row["p_live"] is not None for row in rows) > 1:
        warn(f"{model} gives every input the same P(live) {scored.pop():.4f}: it does not separate them (an "
             "undertrained student, e.g. the Quick start's), so its decisions say nothing about these images")
    return rows


def format_predictions(rows: list[dict]) -> str:
    """A table: path, P(live), decision (and the face box when detecting); then the threshold(s) used."""
    width = max([len("path"), *(len(row["path"]) for row in rows)])
    faces = any("face" in row for row in rows)
    lines = [f"{'path':<{width}}  P(live)  decision" + ("  face [x, y, w, h]" if faces else "")]
    for row in rows:
        p_live = "-" if row["p_live"] is None else f"{row['p_live']:.4f}"
        line = f"{row['path']:<{width}}  {p_live:>7}  {row['decision']:<8}"
        if faces:
            box = row.get("face")
            line += "  " + ("-" if box is None else "[" + ", ".join(f"{v:g}" for v in box) + "]")
            if "frames" in row:
                line += f"  (video: {row['face_frames']} of {len(row['frames'])} frames with a face, mean P(live))"
        lines.append(line.rstrip())
    thresholds = ", ".join(f"{t:.4f}" for t in sorted({row["threshold"] for row in rows}))
    lines.append(f"live when P(live) >= {thresholds}")
    return "\n".join(lines)
