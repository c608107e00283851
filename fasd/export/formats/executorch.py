"""ExecuTorch: a .pte lowered to the XNNPACK backend, batch axis dynamic (bounded; the scorer chunks).

The metadata travels as a constant method (``fasd_metadata`` returns its JSON text). int8 is PyTorch 2
export quantisation with the XNNPACK quantizer (static, per-channel symmetric int8 weights, int8
activations calibrated on real frames).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from fasd.export.deployable import Deployable
from fasd.export.formats import ExportOptions, register_format
from fasd.export.metadata import encode_metadata
from fasd.export.runtimes import EXECUTORCH_MAX_BATCH, METADATA_METHOD, ExecuTorchStudent, require

INT8 = "static, per-channel int8 weights, int8 activations (XNNPACK quantizer, PT2E)"
_NEEDS = "--format executorch"


def _exported(deployable: Deployable, options: ExportOptions) -> torch.export.ExportedProgram:
    batch = torch.export.Dim("batch", min=1, max=EXECUTORCH_MAX_BATCH)
    example = deployable.example_inputs(2)
    dynamic = tuple({0: batch} for _ in example)
    program = torch.export.export(deployable.module, example, dynamic_shapes=dynamic)
    if not options.int8:
        return program
    xnnpack = require("executorch.backends.xnnpack.quantizer.xnnpack_quantizer", "executorch", _NEEDS)
    pt2e = require("torchao.quantization.pt2e.quantize_pt2e", "executorch", _NEEDS)
    quantizer = xnnpack.XNNPACKQuantizer().set_global(
        xnnpack.get_symmetric_quantization_config(is_per_channel=True))
    prepared = pt2e.prepare_pt2e(program.module(), quantizer)
    with torch.no_grad():
        for start in range(0, len(options.calibration), EXECUTORCH_MAX_BATCH):
            prepared(torch.from_numpy(options.calibration[start:start + EXECUTORCH_MAX_BATCH]))
    return torch.export.export(pt2e.convert_pt2e(prepared), example, dynamic_shapes=dynamic)


@register_format("executorch", ".pte", int8=INT8, help="ExecuTorch (.pte, XNNPACK)", runtime=ExecuTorchStudent)
def write_executorch(deployable: Deployable, out: Path, options: ExportOptions) -> str:
    exir = require("executorch.exir", "executorch", _NEEDS)
    partitioner = require("executorch.backends.xnnpack.partition.xnnpack_partitioner", "executorch", _NEEDS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # export/lowering chatter about deprecated internals
        program = _exported(deployable, options)
        lowered = exir.to_edge_transform_and_lower(
            program, partitioner=[partitioner.XnnpackPartitioner()],
            constant_methods={METADATA_METHOD: json.dumps(encode_metadata(deployable.metadata))}).to_executorch()
    out.write_bytes(lowered.buffer)
    note = "XNNPACK delegate, dynamic batch"
    return note if not options.int8 else f"{note}, int8 {INT8}, calibrated on {options.calibration_source}"
