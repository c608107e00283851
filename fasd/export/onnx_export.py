"""Export a checkpoint's deployed student (encoder + logit head) to one self-contained ONNX file.

The TorchScript exporter (``dynamo=False``) is used on purpose: it writes a compact single file
with the weights inside (no external data) and a dynamic batch axis. The file only appears at
``out`` after onnx.checker and an ONNX Runtime vs PyTorch parity check pass.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from fasd.errors import FasdError
from fasd.export.onnx_model import (INPUT_NAME, INPUT_SHAPE, OUTPUT_NAMES, OnnxStudent, encode_metadata,
                                    student_metadata)
from fasd.student_train.checkpoint import load_student
from fasd.student_train.model import DeployedStudent, parameter_counts

MIN_OPSET = 13  # Softmax over one axis
MAX_OPSET = 20  # the newest opset the TorchScript exporter writes
PARITY_TOLERANCE = 1e-4  # max |Δ p_live| allowed between ONNX Runtime and PyTorch
PARITY_BATCHES = (1, 8)


@dataclass(frozen=True)
class ExportReport:
    path: Path
    bytes: int
    parameters: int  # deployed: encoder + logit head
    max_abs_diff: float  # max |Δ p_live|, ONNX Runtime vs PyTorch
    opset: int
    eer_threshold: float | None  # as written to the metadata

    def format(self) -> str:
        threshold = ("unknown (fasd predict falls back to 0.5)" if self.eer_threshold is None
                     else f"{self.eer_threshold:.4f}")
        batches = ", ".join(map(str, PARITY_BATCHES))
        return (f"wrote {self.path}: {self.parameters / 1e6:.2f} M parameters, {self.bytes / 1e6:.2f} MB, "
                f"opset {self.opset}\n"
                f"parity ONNX Runtime vs PyTorch (batch {batches}): max |Δ p_live| = {self.max_abs_diff:.1e} "
                f"(limit {PARITY_TOLERANCE:.0e})\n"
                f"EER threshold in metadata: {threshold}")


def export_onnx(checkpoint: Path, out: Path, opset: int = 17) -> ExportReport:
    """Export, check and parity-test; FasdError (and nothing written at ``out``) on any failure."""
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise FasdError(f"--opset {opset} is not supported; pass an opset from {MIN_OPSET} to {MAX_OPSET}")
    out = Path(out)
    if out.is_dir():
        raise FasdError(f"--out {out} is a directory; pass a file name such as {out / 'student.onnx'}")
    student, info = load_student(checkpoint)
    model = DeployedStudent(student).eval()
    eer_threshold = info.get("eer_threshold")
    proto = _to_onnx(model, opset)
    onnx.helper.set_model_props(proto, encode_metadata(student_metadata(eer_threshold)))
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise FasdError(f"the ONNX export of {checkpoint} fails onnx.checker ({str(exc).splitlines()[0]}); "
                        "try another --opset") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        tmp.write_bytes(proto.SerializeToString())
        diff = _parity(model, tmp)
        if not diff <= PARITY_TOLERANCE:  # also catches NaN
            raise FasdError(f"the ONNX export of {checkpoint} disagrees with PyTorch (max |Δ p_live| = {diff:.1e} "
                            f"> {PARITY_TOLERANCE:.0e}); nothing written, try another --opset")
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return ExportReport(path=out, bytes=out.stat().st_size, parameters=parameter_counts(student)["deployed"],
                        max_abs_diff=diff, opset=opset,
                        eer_threshold=None if eer_threshold is None else float(eer_threshold))


def _to_onnx(model: DeployedStudent, opset: int) -> onnx.ModelProto:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is chosen on purpose
        torch.onnx.export(model, (torch.zeros(1, *INPUT_SHAPE),), buffer, dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                          dynamic_axes={name: {0: "batch"} for name in (INPUT_NAME, *OUTPUT_NAMES)})
    return onnx.load_from_string(buffer.getvalue())


def _parity(model: DeployedStudent, path: Path) -> float:
    """Max |Δ p_live| between ONNX Runtime on ``path`` and PyTorch on the same random inputs."""
    onnx_student = OnnxStudent(path)
    generator = torch.Generator().manual_seed(0)
    diffs = []
    for batch in PARITY_BATCHES:
        images = torch.randn(batch, *INPUT_SHAPE, generator=generator)
        with torch.inference_mode():
            expected = model(images)[1].numpy()
        diffs.append(np.abs(onnx_student.p_live(images.numpy()) - expected).max())
    return float(np.max(diffs))  # NaN propagates, so the caller's check fails
