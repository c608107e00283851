"""Student checkpoints: what a training run keeps and what export, evaluate and predict read.

Format: ``torch.save({"fasd_student": 1, "model": state dict, "student_config": StudentConfig as a dict,
"epoch": int, "config": the run's options (``config["student"]``: the registered student),
"val_threshold": float | None, "val_loss": float | None, "crop_policy": the training packs' CropPolicy as JSON
or None, best.pt: "operating_point", "val_labels", "val_scores"
(``validation_record``), last.pt: "optimizer": ..., "scheduler": ..., "scaler": ...})``.
Only tensors and plain Python values, so ``weights_only=True`` loading works. Checkpoints of fasd 0.1 (no
student name or config) are MobileNetV3-Small students; older checkpoints hold the validation threshold as
``eer_threshold`` (read both with fasd.evaluate.metrics.stored_val_threshold).
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch

from fasd.errors import FasdError
from fasd.faces.policy import CropPolicy
from fasd.io_checks import write_atomically
from fasd.state_fit import check_state_fits
from fasd.student_train.students import StudentConfig, student_kind

CHECKPOINT_VERSION = 1


DEFAULT_STUDENT = "mobilenetv3-small"  # the only student of fasd 0.1


def save_checkpoint(path: Path, student: torch.nn.Module, epoch: int, config: dict,
                    val_threshold: float | None = None, val_loss: float | None = None,
                    extra: dict | None = None, crop_policy: CropPolicy | None = None) -> None:
    """Write atomically (temp file + rename) so a crash never leaves a truncated checkpoint. ``val_threshold``: the
    threshold chosen on the sources' validation split at the run's operating point (default its EER).
    ``crop_policy``: how the training frames were cropped from camera frames (export and predict crop the same way)."""
    payload = {"fasd_student": CHECKPOINT_VERSION, "model": student.state_dict(),
               "student_config": student.config.to_json(), "epoch": epoch, "config": config,
               "val_threshold": val_threshold, "val_loss": val_loss,
               "crop_policy": None if crop_policy is None else crop_policy.to_json(), **(extra or {})}
    write_atomically(Path(path), lambda tmp: torch.save(payload, tmp))


def validation_record(operating_point: str, labels: np.ndarray, scores: np.ndarray) -> dict:
    """What best.pt keeps of the sources' validation split beside ``val_threshold``: the operating point it was
    chosen at and every frame's label and P(live), from which ``fasd export --operating-point`` chooses another."""
    return {"operating_point": operating_point, "val_labels": torch.as_tensor(np.asarray(labels), dtype=torch.int8),
            "val_scores": torch.as_tensor(np.asarray(scores), dtype=torch.float64)}


def validation_scores(info: dict, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(labels, P(live)) of the sources' validation split kept by ``validation_record``."""
    if "val_scores" not in info:
        raise FasdError(f"{path} keeps no validation scores (it was written before fasd 0.3); choose the operating "
                        "point when training it: fasd train --operating-point")
    return info["val_labels"].numpy().astype(np.int64), info["val_scores"].numpy()


def read_checkpoint(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FasdError(f"student checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise FasdError(f"{path} is not a readable fasd student checkpoint ({first})") from None
    if not isinstance(payload, dict) or payload.get("fasd_student") != CHECKPOINT_VERSION:
        raise FasdError(f"{path} is not a fasd student checkpoint (expected the output of `fasd train`)")
    return payload


def student_config_of(payload: dict, where: str = "the checkpoint") -> StudentConfig:
    """The checkpoint's StudentConfig (fasd 0.1: a projection head sized by its weights)."""
    if "student_config" in payload:
        return StudentConfig.from_json(payload["student_config"], where)
    if not isinstance(payload.get("model"), dict):
        raise FasdError(f"{where} holds no student weights ('model' is not a state dict)")
    projection = payload["model"].get("projection_head.2.weight")
    return StudentConfig(projection_dim=None if projection is None else int(projection.shape[0]))


def load_student(path: Path) -> tuple[torch.nn.Module, dict]:
    """The registered student in eval mode with the checkpoint's weights, and the checkpoint's metadata."""
    payload = read_checkpoint(path)
    config = payload.get("config") or {}
    name = config.get("student", DEFAULT_STUDENT) if isinstance(config, dict) else DEFAULT_STUDENT
    student = student_kind(str(name)).build(student_config_of(payload, str(path)))
    weights = payload.get("model")
    if not isinstance(weights, dict):
        raise FasdError(f"{path} holds no student weights ('model' is not a state dict)")
    check_state_fits(student, weights, str(path), f"it is not a {name} student of this fasd version")
    return student.eval(), {k: v for k, v in payload.items() if k != "model"}
