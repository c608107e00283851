"""LiteRT (TFLite): registered so that `--format litert` says exactly why it cannot be written here.

Neither converter installs beside fasd's pinned packages: litert-torch (PyTorch -> LiteRT) pins its own torch
release, and the ONNX route (onnx2tf) pulls TensorFlow, which pins numpy < 2, onnx 1.19, onnxruntime 1.23 and
protobuf 4, downgrading packages fasd needs. docs/deploying.md records this.
"""

from __future__ import annotations

from pathlib import Path

import torch

from fasd.errors import FasdError
from fasd.export.deployable import Deployable
from fasd.export.formats import ExportOptions, register_format


@register_format("litert", ".tflite", int8=None, help="LiteRT (.tflite), NOT written in this environment (no "
                 "converter installs beside fasd's packages): export onnx and convert it elsewhere")
def write_litert(deployable: Deployable, out: Path, options: ExportOptions) -> str:
    raise FasdError(f"--format litert: no LiteRT converter installs beside fasd's packages (torch "
                    f"{torch.__version__}: litert-torch pins its own torch release, onnx2tf's TensorFlow downgrades "
                    "numpy, onnx and onnxruntime); export --format onnx and convert it in a separate environment, "
                    "see docs/deploying.md")
