"""Export formats, one module each, registered by name with ``@register_format``.

A format writes the deployable module to a file of its suffix; the export driver (fasd.export.export)
then verifies that file (in its runtime where one runs on Linux) before it appears at --out. Everything fasd
knows about a format is a field of its ExportFormat: suffix, help line, int8 route, the runtime that opens its
files (fasd.export.runtimes.load_scorer picks it by suffix), whether it takes one input per modality.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fasd.export.deployable import Deployable
from fasd.registry import Registry

if TYPE_CHECKING:
    from fasd.export.runtimes import Scorer


@dataclass(frozen=True)
class ExportOptions:
    opset: int = 17  # ONNX opset (ONNX and the formats built from ONNX)
    calibration: np.ndarray | None = None  # int8: calibration frames (eval_transform output); None: fp32
    calibration_source: str = ""  # e.g. "256 frames of alpha/train"
    ort_platform: str = "arm"  # --format ort: the CPU the .ort is laid out for (fasd.export.formats.onnx)

    @property
    def int8(self) -> bool:
        return self.calibration is not None


Writer = Callable[[Deployable, Path, ExportOptions], str]  # writes the file, returns a note for the report
Checker = Callable[[Path, Deployable], str]  # raises FasdError when the file breaks the contract, else a note
Runtime = Callable[[Path, "int | None"], "Scorer"]  # opens a written file as a Scorer (path, intra-op threads)


@dataclass(frozen=True)
class ExportFormat:
    name: str
    suffix: str  # of the file (a directory for Core ML's .mlpackage)
    write: Writer
    int8: str | None  # how --quantize int8 is done in this format; None: not supported
    check: Checker | None  # formats with no runtime on Linux: a spec check; None: parity in its runtime
    help: str = ""  # one line for `fasd export --help`
    runtime: Runtime | None = None  # opens its files (evaluate, predict, bench, parity); None: fasd cannot
    multi_input: bool = False  # its writer and runtime take one input per modality (multimodal students)


_FORMATS: Registry[ExportFormat] = Registry(
    "--format", tuple(f"{__name__}.{m}" for m in ("onnx", "executorch", "litert", "coreml")),
    unknown="{flag} {name} is not supported; pass one of {names}")


def register_format(name: str, suffix: str, int8: str | None, check: Checker | None = None, help: str = "",
                    runtime: Runtime | None = None, multi_input: bool = False) -> Callable[[Writer], Writer]:
    return _FORMATS.register(name, lambda write: ExportFormat(name, suffix, write, int8, check, help, runtime,
                                                              multi_input))


def formats() -> dict[str, ExportFormat]:
    return _FORMATS.all()


def export_format(name: str) -> ExportFormat:
    return _FORMATS.get(name)
