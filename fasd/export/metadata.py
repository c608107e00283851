"""The input contract every exported file carries: input name and shape, preprocessing, label order,
validation threshold, and the crop policy (how to cut the face out of a camera frame: fasd.faces.policy).
Stored as text -> text pairs (ONNX metadata_props, ExecuTorch constant methods,
Core ML user-defined metadata): numbers and lists as JSON, the rest as plain text."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

import numpy as np

from fasd import __version__
from fasd.constants import CLASS_NAMES, IMAGENET_MEAN, IMAGENET_STD, LABEL_LIVE, LABEL_SPOOF, STUDENT_INPUT_SIZE
from fasd.errors import FasdError
from fasd.faces.policy import CropPolicy, policy_from_json

INPUT_NAME = "image"
OUTPUT_NAMES = ("logits", "p_live")
LABELS = f"{LABEL_SPOOF} = {CLASS_NAMES[LABEL_SPOOF]}, {LABEL_LIVE} = {CLASS_NAMES[LABEL_LIVE]}"
PREPROCESSING = (f"RGB, resize to {STUDENT_INPUT_SIZE} x {STUDENT_INPUT_SIZE}, scale to [0, 1], "
                 "subtract mean, divide by std (per channel), NCHW float32")
OUTPUTS = "logits N x 2 [spoof, live]; p_live N = softmax(logits)[:, 1]"
# "eer_threshold": the validation threshold's name in files exported before fasd called it val_threshold
_JSON_KEYS = ("input_size", "mean", "std", "val_threshold", "eer_threshold", "modalities", "crop_policy")
SINGLE_INPUT = ("rgb",)  # the modalities of a one-input student (no "modalities" key in its metadata)
_REQUIRED_KEYS = ("input_size", "mean", "std", "labels")


def student_metadata(val_threshold: float | None, input_size: int = STUDENT_INPUT_SIZE,
                     modalities: tuple[str, ...] = SINGLE_INPUT, operating_point: str | None = None,
                     crop_policy: CropPolicy | None = None) -> dict:
    """The description every scorer reports about its model; ``val_threshold`` (the threshold chosen on the
    sources' validation split, fasd.evaluate.metrics.stored_val_threshold reads it) only when known, beside
    ``operating_point``, where it was chosen (eer, apcer=A, bpcer=B; stored_operating_point reads it). A multimodal
    student has one input per modality, named after it (a missing modality is the all-zero frame). ``crop_policy``:
    how its training frames were cut from camera frames (``crop_policy_of`` reads it), when a detector made them."""
    multimodal = tuple(modalities) != SINGLE_INPUT
    meta = {"fasd_version": __version__, "input_name": ",".join(modalities) if multimodal else INPUT_NAME,
            "input_size": input_size, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "labels": LABELS,
            "preprocessing": PREPROCESSING + ("; per modality, a missing one as the all-zero frame"
                                              if multimodal else ""), "outputs": OUTPUTS}
    if multimodal:
        meta["modalities"] = list(modalities)
    if crop_policy is not None:
        meta["crop_policy"] = crop_policy.to_json()
    if val_threshold is not None:
        meta["val_threshold"] = float(val_threshold)
        if operating_point is not None:
            meta["operating_point"] = operating_point
    return meta


def encode_metadata(meta: Mapping) -> dict[str, str]:
    """Numbers and lists as JSON, text as is."""
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
    expected = (list(IMAGENET_MEAN), list(IMAGENET_STD))
    found = (meta["mean"], meta["std"])
    if not _close(found, expected) or not isinstance(meta["input_size"], int) or meta["input_size"] < 1:
        raise fail(f"it expects preprocessing (size, mean, std) {(meta['input_size'], *found)}, fasd provides a "
                   f"square size and mean/std {expected}")
    return meta


def _close(found: tuple, expected: tuple) -> bool:
    try:
        pairs = [(np.asarray(a, dtype=float), np.asarray(b, dtype=float)) for a, b in zip(found, expected)]
    except (TypeError, ValueError):  # not numbers
        return False
    return all(a.shape == b.shape and np.allclose(a, b) for a, b in pairs)


def crop_policy_of(meta: dict) -> CropPolicy | None:
    """The crop policy a model's metadata (or a checkpoint's payload) records; None when it has none."""
    return policy_from_json(meta.get("crop_policy"))


def modalities_of(meta: dict) -> tuple[str, ...]:
    """The modalities a model's inputs take, in input order."""
    return tuple(meta.get("modalities", SINGLE_INPUT))


def input_shape(meta: dict) -> tuple[int, ...]:
    """One sample's input as a model's metadata describes it: 3 x S x S, or M x 3 x S x S for M modalities."""
    size, modalities = int(meta["input_size"]), modalities_of(meta)
    return (3, size, size) if modalities == SINGLE_INPUT else (len(modalities), 3, size, size)


def as_batch(images: np.ndarray, inputs: int = 1) -> np.ndarray:
    """Contiguous float32 N x 3 x 112 x 112, or N x inputs x 3 x 112 x 112 for a model of several inputs;
    anything else is a caller bug (ValueError)."""
    batch = np.ascontiguousarray(images, dtype=np.float32)
    per_input = batch.shape[1:] if inputs == 1 else batch.shape[2:]
    if (batch.ndim != (4 if inputs == 1 else 5) or (inputs > 1 and batch.shape[1] != inputs)
            or len(per_input) != 3 or per_input[0] != 3 or per_input[1] != per_input[2]):
        raise ValueError(f"expected images N x {'' if inputs == 1 else f'{inputs} x '}3 x S x S, got {batch.shape}")
    return batch


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
