"""Known-harmless third-party chatter during export, filtered from stderr; every other line is kept.

coremltools announces on import that this machine has no Core ML runtime (eight ``_MLModelProxy`` lines), that
scikit-learn and torch versions are untested by it, and that it flattens the output tuple; ExecuTorch's runtime
logs its CPU probing (``cpuinfo_utils.cpp``); onnxruntime's int8 quantiser warns that a 1-D bias has no axis 1
(it quantises that tensor per-tensor, as intended); torch warns about an Enum registration inside its own export
code. None of these concern the exported file, which export verifies itself.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

KNOWN_HARMLESS = tuple(re.compile(pattern) for pattern in (
    r"^scikit-learn version \S+ is not supported\. .*Disabling scikit-learn conversion API\.$",
    r"^Torch version \S+ has not been tested with coremltools\.",
    r"^Failed to load _ML\w+Proxy: No module named 'coremltools\.libcoremlpython'$",
    r"^Tuple detected at graph output\. This will be flattened in the converted model\.$",
    r"^\[cpuinfo_utils\.cpp:\d+\] ",
    r"^(WARNING:root:)?Axis 1 is out-of-range for weight '[^']*' with rank 1$",
    r"^W\d{4} [\d:. ]+\d+ torch/utils/_pytree\.py:\d+\] <enum '\w+'> is an Enum subclass and is now natively "
    r"supported by torch\.compile",
))


def harmless(line: str) -> bool:
    return any(pattern.search(line.rstrip("\r\n")) for pattern in KNOWN_HARMLESS)


@contextmanager
def filtered_stderr() -> Iterator[None]:
    """Capture the process's stderr (file descriptor 2: C++ libraries write there too) while the block runs, then
    write back every line that is not KNOWN_HARMLESS (progress bars included, at the end)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines = capture.read().decode("utf-8", errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not harmless(line)))
            sys.stderr.flush()
