"""Export formats, one module each, registered by name with ``@register_format``.

A format writes the deployable module to a file of its suffix; the export driver (fasd.export.export)
then verifies that file (in its runtime where one runs on Linux) before it appears at --out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fasd.export.deployable import Deployable
from fasd.registry import Registry


@dataclass(frozen=True)
class ExportOptions:
    opset: int = 17  # ONNX opset (ONNX and the formats built from ONNX)
    calibration: np.ndarray | None = None  # int8: calibration frames (eval_transform output); None: fp32
    calibration_source: str = ""  # e.g. "256 frames of alpha/train"

    @property
    def int8(self) -> bool:
        return self.calibration is not None


Writer = Callable[[Deployable, Path, ExportOptions], str]  # writes the file, returns a note for the report
Checker = Callable[[Path, Deployable], str]  # raises FasdError when the file breaks the contract, else a note


@dataclass(frozen=True)
class ExportFormat:
    name: str
    suffix: str  # of the file (a directory for Core ML's .mlpackage)
    write: Writer
    int8: str | None  # how --quantize int8 is done in this format; None: not supported
    check: Checker | None  # formats with no runtime on Linux: a spec check; None: parity in its runtime


_FORMATS: Registry[ExportFormat] = Registry(
    "--format", tuple(f"{__name__}.{m}" for m in ("onnx", "executorch", "litert", "coreml")),
    unknown="{flag} {name} is not supported; pass one of {names}")


def register_format(name: str, suffix: str, int8: str | None, check: Checker | None = None
                    ) -> Callable[[Writer], Writer]:
    return _FORMATS.register(name, lambda write: ExportFormat(name, suffix, write, int8, check))


def formats() -> dict[str, ExportFormat]:
    return _FORMATS.all()


def export_format(name: str) -> ExportFormat:
    return _FORMATS.get(name)
