"""Scorers mapping normalised image batches to P(live): an exported ONNX file or a training checkpoint.

Both take float32 N x 3 x 112 x 112 ImageNet-normalised images (``eval_transform`` output) and
agree within 1e-4, so evaluation and prediction can take either file.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

import numpy as np
import onnxruntime as ort
import torch

from fasd import __version__
from fasd.constants import CLASS_NAMES, IMAGENET_MEAN, IMAGENET_STD, LABEL_LIVE, LABEL_SPOOF, STUDENT_INPUT_SIZE
from fasd.errors import FasdError
from fasd.student_train.checkpoint import load_student
from fasd.student_train.model import DeployedStudent

INPUT_NAME = "image"
OUTPUT_NAMES = ("logits", "p_live")
INPUT_SHAPE = (3, STUDENT_INPUT_SIZE, STUDENT_INPUT_SIZE)
LABELS = f"{LABEL_SPOOF} = {CLASS_NAMES[LABEL_SPOOF]}, {LABEL_LIVE} = {CLASS_NAMES[LABEL_LIVE]}"
PREPROCESSING = (f"RGB, resize to {STUDENT_INPUT_SIZE} x {STUDENT_INPUT_SIZE}, scale to [0, 1], "
                 "subtract mean, divide by std (per channel), NCHW float32")
OUTPUTS = "logits N x 2 [spoof, live]; p_live N = softmax(logits)[:, 1]"
# Metadata values that are numbers or lists are stored as JSON text; the rest as plain text.
_JSON_KEYS = ("input_size", "mean", "std", "eer_threshold")
_REQUIRED_KEYS = ("input_size", "mean", "std", "labels")


class Scorer(Protocol):
    """What evaluation and prediction need from a model file."""

    path: Path
    metadata: dict

    def p_live(self, images: np.ndarray) -> np.ndarray: ...


def student_metadata(eer_threshold: float | None) -> dict:
    """The description every scorer reports about its model; ``eer_threshold`` only when known."""
    meta = {"fasd_version": __version__, "input_name": INPUT_NAME, "input_size": STUDENT_INPUT_SIZE,
            "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "labels": LABELS,
            "preprocessing": PREPROCESSING, "outputs": OUTPUTS}
    if eer_threshold is not None:
        meta["eer_threshold"] = float(eer_threshold)
    return meta


def encode_metadata(meta: Mapping) -> dict[str, str]:
    """ONNX metadata_props are text -> text: numbers and lists as JSON, text as is."""
    return {key: json.dumps(value) if key in _JSON_KEYS else str(value) for key, value in meta.items()}


def decode_metadata(props: Mapping[str, str], fail: Callable[[str], FasdError]) -> dict:
    """Inverse of encode_metadata; ``fail(reason)`` builds the error when the metadata is not fasd's."""
    missing = [key for key in _REQUIRED_KEYS if key not in props]
    if missing:
        raise fail(f"metadata lacks {', '.join(missing)}")
    try:
        meta = {key: json.loads(value) if key in _JSON_KEYS else value for key, value in props.items()}
    except json.JSONDecodeError as exc:
        raise fail(f"unreadable metadata ({exc})") from None
    expected = (STUDENT_INPUT_SIZE, list(IMAGENET_MEAN), list(IMAGENET_STD))
    found = (meta["input_size"], meta["mean"], meta["std"])
    if not _close(found, expected):
        raise fail(f"it expects preprocessing (size, mean, std) {found}, fasd provides {expected}")
    return meta


def _close(found: tuple, expected: tuple) -> bool:
    try:
        pairs = [(np.asarray(a, dtype=float), np.asarray(b, dtype=float)) for a, b in zip(found, expected)]
    except (TypeError, ValueError):  # not numbers
        return False
    return all(a.shape == b.shape and np.allclose(a, b) for a, b in pairs)


def as_batch(images: np.ndarray) -> np.ndarray:
    """Contiguous float32 N x 3 x 112 x 112; anything else is a caller bug (ValueError)."""
    batch = np.ascontiguousarray(images, dtype=np.float32)
    if batch.ndim != 4 or batch.shape[1:] != INPUT_SHAPE:
        raise ValueError(f"expected images N x {' x '.join(map(str, INPUT_SHAPE))}, got {batch.shape}")
    return batch


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class OnnxStudent:
    """An exported student run by ONNX Runtime on CPU."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        """``threads``: ONNX Runtime intra-op threads (None: its default, one per physical core)."""
        self.path = Path(path)
        if not self.path.is_file():
            raise FasdError(f"ONNX model not found: {self.path}; pass the .onnx file written by `fasd export`")
        if threads is not None and threads < 1:
            raise FasdError(f"threads must be >= 1, got {threads}")
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        try:
            self._session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's errors share no base class narrower than Exception
            raise self._not_ours(_first_line(exc)) from None
        self._check_io()
        self.metadata = decode_metadata(self._session.get_modelmeta().custom_metadata_map, self._not_ours)

    def _not_ours(self, reason: str) -> FasdError:
        return FasdError(f"{self.path} is not a fasd student ONNX model: {reason}; "
                         "pass the .onnx file written by `fasd export`")

    def _check_io(self) -> None:
        inputs = self._session.get_inputs()
        outputs = [node.name for node in self._session.get_outputs()]
        shape = inputs[0].shape if len(inputs) == 1 else []
        if (len(inputs) != 1 or inputs[0].name != INPUT_NAME or inputs[0].type != "tensor(float)"
                or len(shape) != 4 or isinstance(shape[0], int) or tuple(shape[1:]) != INPUT_SHAPE
                or outputs != list(OUTPUT_NAMES)):
            found = ", ".join(f"{node.name} {node.type} {node.shape}" for node in inputs)
            raise self._not_ours(f"expected input {INPUT_NAME} float N x 3 x {STUDENT_INPUT_SIZE} x "
                                 f"{STUDENT_INPUT_SIZE} (dynamic N) and outputs {', '.join(OUTPUT_NAMES)}; "
                                 f"found input(s) {found or 'none'} and outputs {', '.join(outputs) or 'none'}")

    def p_live(self, images: np.ndarray) -> np.ndarray:
        """P(live) per image, float32 N."""
        return self._session.run(["p_live"], {INPUT_NAME: as_batch(images)})[0]


class TorchStudentScorer:
    """A training checkpoint's deployed part, scored by PyTorch on CPU in eval mode."""

    def __init__(self, checkpoint: Path) -> None:
        self.path = Path(checkpoint)
        student, info = load_student(self.path)
        self.model = DeployedStudent(student).eval()
        self.metadata = student_metadata(info.get("eer_threshold"))

    @torch.inference_mode()
    def p_live(self, images: np.ndarray) -> np.ndarray:
        """P(live) per image, float32 N."""
        return self.model(torch.from_numpy(as_batch(images)))[1].numpy()


def load_scorer(path: Path) -> Scorer:
    """An ONNX file (by its .onnx suffix, or any non-zip file) or a training checkpoint (a torch zip)."""
    path = Path(path)
    if not path.is_file():
        raise FasdError(f"model not found: {path}; pass a checkpoint from `fasd train` or a .onnx file "
                        "from `fasd export`")
    if path.suffix.lower() == ".onnx":
        return OnnxStudent(path)
    if zipfile.is_zipfile(path):
        return TorchStudentScorer(path)
    try:
        return OnnxStudent(path)
    except FasdError:
        raise FasdError(f"{path} is neither a fasd student checkpoint nor a fasd student ONNX model; pass a "
                        "checkpoint from `fasd train` or a .onnx file from `fasd export`") from None
