"""Core ML: an .mlpackage (ML Program, fp32 compute) converted by coremltools from a TorchScript trace.

Core ML's runtime exists only on macOS/iOS, so on Linux the export is checked by its spec (input and
output names, batch range, metadata), not run. int8 is coremltools' weight-only linear quantisation:
static activation quantisation needs the Core ML runtime to calibrate, which Linux lacks.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from fasd.errors import FasdError
from fasd.export.deployable import Deployable
from fasd.export.formats import ExportOptions, register_format
from fasd.export.metadata import OUTPUT_NAMES, encode_metadata
from fasd.export.runtimes import Scorer, require

MAX_BATCH = 64
INT8 = "weight-only per-channel int8 (coremltools linear_quantize_weights); activations fp32"
_NEEDS = "--format coreml"


def check_coreml(path: Path, deployable: Deployable) -> str:
    """The saved package's spec: input name and shape, output names, and the metadata, as written."""
    ct = require("coremltools", "coreml", _NEEDS)
    spec = ct.utils.load_spec(str(path))
    inputs = [(node.name, tuple(node.type.multiArrayType.shape)) for node in spec.description.input]
    outputs = [node.name for node in spec.description.output]
    expected_inputs = [(deployable.input_names[0],
                        (1, len(deployable.mean), deployable.input_size, deployable.input_size))]
    stored = dict(spec.description.metadata.userDefined)
    wrong = {k: v for k, v in encode_metadata(deployable.metadata).items() if stored.get(k) != v}
    if inputs != expected_inputs or outputs != list(OUTPUT_NAMES) or wrong:
        raise FasdError(f"the Core ML export does not keep the input contract (inputs {inputs}, outputs {outputs}, "
                        f"metadata differing in {', '.join(wrong) or 'nothing'}); nothing written")
    return f"spec checked: input {inputs[0][0]} {inputs[0][1]}, outputs {', '.join(outputs)}, metadata"


def _no_runtime(path: Path, threads: int | None) -> Scorer:
    raise FasdError(f"{path} is a Core ML model: its runtime runs only on macOS/iOS; on Linux evaluate the "
                    "checkpoint or an .onnx/.ort/.pte export of it")


@register_format("coreml", ".mlpackage", int8=INT8, check=check_coreml, help="Core ML (.mlpackage; runs on "
                 "macOS/iOS, checked by its spec on Linux)", runtime=_no_runtime)
def write_coreml(deployable: Deployable, out: Path, options: ExportOptions) -> str:
    ct = require("coremltools", "coreml", _NEEDS)
    (name,) = deployable.input_names
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and converter chatter
        traced = torch.jit.trace(deployable.module, deployable.example_inputs())
        shape = (ct.RangeDim(1, MAX_BATCH, 1), len(deployable.mean), deployable.input_size, deployable.input_size)
        model = ct.convert(traced, inputs=[ct.TensorType(name=name, shape=shape)],
                           outputs=[ct.TensorType(name=output) for output in OUTPUT_NAMES],
                           convert_to="mlprogram", compute_precision=ct.precision.FLOAT32,
                           minimum_deployment_target=ct.target.iOS16)
        if options.int8:
            config = ct.optimize.coreml.OptimizationConfig(
                global_config=ct.optimize.coreml.OpLinearQuantizerConfig(mode="linear_symmetric",
                                                                         granularity="per_channel"))
            model = ct.optimize.coreml.linear_quantize_weights(model, config)
    model.short_description = deployable.metadata["outputs"]
    model.user_defined_metadata.update(encode_metadata(deployable.metadata))
    model.save(str(out))
    note = f"ML Program (iOS 16+), fp32 compute, batch 1..{MAX_BATCH}"
    return note if not options.int8 else f"{note}, int8 {INT8}"
