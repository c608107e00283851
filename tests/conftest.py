"""Shared fixtures: tiny synthetic data, random CLIP teachers saved in FLIP's checkpoint format."""

from __future__ import annotations

from pathlib import Path

import os

import numpy as np
import pytest
import torch
from hypothesis import settings

from fasd.data.synth import synthesize
from fasd.teacher_cache.arch import TINY_ARCH, openai_state_dict, random_clip

# Property tests draw the same examples on every run (make test, CI): a red run is reproducible, never luck.
# HYPOTHESIS_PROFILE=explore draws new ones (then pin what fails with @example).
settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


def save_flip_checkpoint(state: dict[str, torch.Tensor], path: Path) -> Path:
    """Save an OpenAI-format CLIP state dict the way FLIP does: 'model.' prefix, fp16 CLIP tensors,
    an unused image_mlp head and numpy scalars beside the weights."""
    flip_state = {f"model.{k}": (v.half() if v.is_floating_point() else v) for k, v in state.items()}
    width = state["visual.proj"].shape[1]
    flip_state["image_mlp.0.weight"] = torch.randn(width, width)
    flip_state["image_mlp.0.bias"] = torch.zeros(width)
    torch.save({"epoch": np.int64(7), "best_hter": np.float64(0.123), "state_dict": flip_state}, path)
    return path


@pytest.fixture(scope="session")
def tiny_clip_state() -> dict[str, torch.Tensor]:
    return openai_state_dict(random_clip(TINY_ARCH, seed=0))


@pytest.fixture(scope="session")
def tiny_flip_checkpoint(tmp_path_factory, tiny_clip_state) -> Path:
    return save_flip_checkpoint(tiny_clip_state, tmp_path_factory.mktemp("ckpt") / "flip_tiny.pth.tar")


@pytest.fixture(scope="session")
def synth_config(tmp_path_factory) -> Path:
    """Three tiny synthetic domains (alpha, beta, gamma) at 64 px, registered in a fasd.toml."""
    return synthesize(tmp_path_factory.mktemp("synth"), domains=3, frames=60, size=64, seed=0, progress=False)


@pytest.fixture(scope="session")
def synth_store(tmp_path_factory, synth_config, tiny_flip_checkpoint) -> str:
    """A complete teacher store of every synthetic domain, cached by the tiny random teacher."""
    from fasd.config import load_registry
    from fasd.data.open_source import open_source
    from fasd.teacher_cache.job import CacheOptions, run_cache
    from fasd.teacher_cache.registry import TeacherOptions, load_teacher

    store = str(tmp_path_factory.mktemp("store") / "teacher.zarr")
    registry = load_registry(synth_config)
    loaded = load_teacher("flip-mcl", TeacherOptions(tiny_flip_checkpoint))
    for name in registry.datasets:
        run_cache(open_source(registry.dataset(name)), loaded, store, CacheOptions(batch_size=32, progress=False))
    return store


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors on a shared 2-core machine: one intra-op thread trains ~10x faster than several
    (use per module: ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
