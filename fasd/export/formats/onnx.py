"""ONNX (fp32 or int8 QDQ) and the ONNX Runtime Mobile ``.ort`` format built from it by ORT's own converter.

The TorchScript exporter (``dynamo=False``) is used on purpose: it writes a compact single file with the
weights inside (no external data) and a dynamic batch axis. int8 is onnxruntime's static post-training
quantisation: QDQ format, per-channel symmetric int8 weights, uint8 activations calibrated (MinMax) on real
frames.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from fasd.errors import FasdError
from fasd.export.deployable import Deployable
from fasd.export.formats import ExportOptions, register_format
from fasd.export.metadata import OUTPUT_NAMES, encode_metadata, first_line
from fasd.export.runtimes import OnnxStudent

MIN_OPSET = 13  # Softmax over one axis
MAX_OPSET = 20  # the newest opset the TorchScript exporter writes
CALIBRATION_BATCH = 16
INT8 = "static QDQ, per-channel int8 weights, uint8 activations (onnxruntime.quantization)"


def onnx_proto(deployable: Deployable, opset: int) -> onnx.ModelProto:
    """The checked fp32 ONNX model with the metadata; FasdError naming the opset on failure."""
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise FasdError(f"--opset {opset} is not supported; pass an opset from {MIN_OPSET} to {MAX_OPSET}")
    buffer = io.BytesIO()
    names = list(deployable.input_names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is chosen on purpose
        torch.onnx.export(deployable.module, deployable.example_inputs(), buffer, dynamo=False,
                          opset_version=opset, input_names=names, output_names=list(OUTPUT_NAMES),
                          dynamic_axes={name: {0: "batch"} for name in (*names, *OUTPUT_NAMES)})
    proto = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(proto, encode_metadata(deployable.metadata))
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise FasdError(f"the ONNX export fails onnx.checker ({first_line(exc)}); try another --opset") from None
    return proto


class _Frames:
    """onnxruntime's CalibrationDataReader over calibration frames, CALIBRATION_BATCH at a time."""

    def __init__(self, name: str, frames: np.ndarray) -> None:
        self._batches = iter([{name: frames[i:i + CALIBRATION_BATCH]}
                              for i in range(0, len(frames), CALIBRATION_BATCH)])

    def get_next(self) -> dict | None:
        return next(self._batches, None)


def _quantize(fp32: Path, out: Path, deployable: Deployable, frames: np.ndarray) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = fp32.with_name("prepared.onnx")
    quant_pre_process(str(fp32), str(prepared))
    quantize_static(str(prepared), str(out), _Frames(deployable.input_names[0], frames),
                    quant_format=QuantFormat.QDQ, per_channel=True, weight_type=QuantType.QInt8,
                    activation_type=QuantType.QUInt8, calibrate_method=CalibrationMethod.MinMax)
    quantized = onnx.load(str(out))
    _shorten_names(quantized)
    onnx.helper.set_model_props(quantized, encode_metadata(deployable.metadata))
    onnx.save(quantized, str(out))


def _shorten_names(model: onnx.ModelProto) -> None:
    """Short internal tensor names and no node names: the QDQ graph has ~4 names per weight, and with the
    exporter's long scoped names they are ~15 % of an int8 file. Graph inputs and outputs keep theirs."""
    graph = model.graph
    keep = {value.name for value in (*graph.input, *graph.output)}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        return name if name in keep or not name else names.setdefault(name, f"t{len(names):x}")

    for node in graph.node:
        node.name = ""
        node.input[:] = [short(name) for name in node.input]
        node.output[:] = [short(name) for name in node.output]
    for tensor in graph.initializer:
        tensor.name = short(tensor.name)
    del graph.value_info[:]  # shape hints only; ONNX Runtime infers them again


@register_format("onnx", ".onnx", int8=INT8, help="ONNX (.onnx, ONNX Runtime)", runtime=OnnxStudent,
                 multi_input=True)
def write_onnx(deployable: Deployable, out: Path, options: ExportOptions) -> str:
    proto = onnx_proto(deployable, options.opset)
    if not options.int8:
        out.write_bytes(proto.SerializeToString())
        return f"opset {options.opset}"
    with tempfile.TemporaryDirectory(prefix="fasd-int8-") as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        fp32.write_bytes(proto.SerializeToString())
        _quantize(fp32, out, deployable, options.calibration)
    return f"opset {options.opset}, int8 {INT8}, calibrated on {options.calibration_source}"


# --ort-platform: the converter's --target_platform. "arm" (phones, the default) leaves out ORT's NCHWc layout
# transformer, whose blocked-layout kernels are x86-specific (AVX2/AVX-512 block sizes): the file runs anywhere,
# but on x86 its convolutions (depthwise ones above all) run NCHW kernels, ~4-35x slower than the .onnx, which
# ONNX Runtime lays out for the CPU at load time. An ORT-format file is never re-optimised at load, so the layout
# must be chosen when it is written: "amd64" bakes the NCHWc layout in (x86 only). See docs/benchmarks.md.
ORT_PLATFORMS = ("arm", "amd64")


@register_format("ort", ".ort", int8=INT8, help="ONNX Runtime Mobile (.ort)", runtime=OnnxStudent,
                 multi_input=True)
def write_ort(deployable: Deployable, out: Path, options: ExportOptions) -> str:
    """ONNX first, then ``python -m onnxruntime.tools.convert_onnx_models_to_ort`` (fixed optimisations, all
    levels, laid out for ``options.ort_platform``)."""
    if options.ort_platform not in ORT_PLATFORMS:
        raise FasdError(f"--ort-platform {options.ort_platform} is not supported; pass one of "
                        f"{', '.join(ORT_PLATFORMS)}")
    with tempfile.TemporaryDirectory(prefix="fasd-ort-") as tmp:
        source = Path(tmp) / "student.onnx"
        note = write_onnx(deployable, source, options)
        command = [sys.executable, "-m", "onnxruntime.tools.convert_onnx_models_to_ort", str(source),
                   "--output_dir", tmp, "--optimization_style", "Fixed", "--target_platform", options.ort_platform]
        done = subprocess.run(command, capture_output=True, text=True)
        converted = Path(tmp) / "student.ort"
        if done.returncode != 0 or not converted.is_file():
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise FasdError(f"ONNX Runtime's ORT-format converter failed ({tail})")
        shutil.move(converted, out)  # /tmp may be another file system
    layout = ("NCHWc layout for x86 (AVX2/AVX-512), x86 only" if options.ort_platform == "amd64" else
              "portable layout for arm; on x86 it runs slower than the .onnx: --ort-platform amd64 for x86")
    return f"{note}, ORT format (fixed optimisations, {layout})"
