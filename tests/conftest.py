"""Shared fixtures: tiny synthetic data, random CLIP teachers saved in FLIP's checkpoint format (plain helper
functions live in tests/helpers.py)."""

from __future__ import annotations

from pathlib import Path

import os

import pytest
import torch
from hypothesis import settings

from fasd.data.synth import synthesize
from fasd.teacher_cache.arch import TINY_ARCH, openai_state_dict, random_clip
from helpers import dying_cache_command, interrupt_on_call, save_flip_checkpoint  # noqa: F401 (re-exported until every module imports helpers)

# Property tests draw the same examples on every run (make test, CI): a red run is reproducible, never luck.
# HYPOTHESIS_PROFILE=explore draws new ones (then pin what fails with @example).
settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))
# In-process runs take their data in the main process unless a test passes --workers (see fasd.device).
os.environ.setdefault("FASD_WORKERS", "0")


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
