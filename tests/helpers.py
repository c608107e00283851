"""Plain helpers shared by the test modules (fixtures live in conftest.py): the CLI runner, the one-line error
assertion, FLIP-format checkpoints, and jobs that die or are interrupted on purpose."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from typer.testing import CliRunner, Result


def fasd(*args) -> Result:
    """Run ``fasd ARGS...`` in this process (paths and numbers given as any object: str() is applied)."""
    from fasd.cli import app
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_one_line(result: Result, *fragments: str) -> str:
    """A user mistake: exit 2, no traceback, exactly one ``error:`` line holding every fragment; returns it."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if "error:" in line]
    assert len(lines) == 1, result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def save_flip_checkpoint(state: dict[str, torch.Tensor], path: Path) -> Path:
    """Save an OpenAI-format CLIP state dict the way FLIP does: 'model.' prefix, fp16 CLIP tensors,
    an unused image_mlp head and numpy scalars beside the weights."""
    flip_state = {f"model.{k}": (v.half() if v.is_floating_point() else v) for k, v in state.items()}
    width = state["visual.proj"].shape[1]
    flip_state["image_mlp.0.weight"] = torch.randn(width, width)
    flip_state["image_mlp.0.bias"] = torch.zeros(width)
    torch.save({"epoch": np.int64(7), "best_hter": np.float64(0.123), "state_dict": flip_state}, path)
    return path


def interrupt_on_call(function, call: int):
    """``function`` wrapped to raise KeyboardInterrupt (Ctrl-C) on its ``call``-th call (1-based)."""
    calls = {"n": 0}

    def wrapped(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            raise KeyboardInterrupt
        return function(*args, **kwargs)

    return wrapped


def dying_cache_command(array: str) -> str:
    """A ``python -c`` script running ``fasd ARGS...`` whose cache job dies like kill -9 (os._exit) while writing
    its second chunk: the chunk's ``array`` (e.g. "feature", "views/feature") is written, its done flag not."""
    return f"""
import os, sys
from fasd.store_schema import writer
original, calls = writer.write_chunk, []
def dying(group, chunk, targets):
    calls.append(chunk)
    if len(calls) == 2:
        rows, values = group.attrs["chunk_rows"], targets[{array!r}]
        group[{array!r}][chunk * rows:chunk * rows + len(values)] = values.astype("f2")
        os._exit(137)
    original(group, chunk, targets)
writer.write_chunk = dying
from fasd.cli import main
sys.argv = ["fasd", *sys.argv[1:]]
main()
"""


def bn_calibrated_student(root: Path, frames: int, size: int, seed: int, calibration: int) -> tuple[Path, Path]:
    """(checkpoint, fasd.toml): a MobileNetV3-Small student with random weights whose BatchNorm statistics are
    those of ``calibration`` real synthetic frames (its logits vary by ~1 across frames: some clearly decided,
    some near the threshold). Used by the export tests and bench/int8_profile.py."""
    from fasd.config import load_registry
    from fasd.data.open_source import open_source
    from fasd.data.synth import synthesize
    from fasd.student_train.checkpoint import save_checkpoint
    from fasd.student_train.model import Student
    from fasd.training.transforms import eval_transform

    config = synthesize(root / "synth", domains=1, frames=frames, size=size, seed=seed, progress=False)
    source = open_source(load_registry(config).dataset("alpha"))
    transform = eval_transform()
    torch.manual_seed(0)
    model = Student()
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None
    with torch.no_grad():
        model.train()(torch.stack([transform(source.read_image(i)) for i in range(calibration)]))
    checkpoint = root / "student.pt"
    save_checkpoint(checkpoint, model.eval(), epoch=1, config={"seed": 0})
    return checkpoint, config
