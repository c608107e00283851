"""An export format defined in this one file: ``dummy``, an ONNX graph under the suffix .dummy, run by ONNX
Runtime. Importing the module registers it (tests/test_registry_contract.py)."""

from fasd.export.formats import register_format
from fasd.export.formats.onnx import write_onnx
from fasd.export.runtimes import OnnxStudent


@register_format("dummy", ".dummy", int8=None, help="ONNX under the suffix .dummy (a test plugin)",
                 runtime=OnnxStudent)
def write_dummy(deployable, out, options):
    return "dummy: " + write_onnx(deployable, out, options)
