"""The synthetic benchmark: packs, metadata, registry, determinism and a sanity check of its cues."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from fasd.config import load_registry
from fasd.constants import LABEL_LIVE, SPLITS
from fasd.data.hdf5_pack import HDF5FrameSource
from fasd.data.open_source import open_source
from fasd.data.synth import DOMAIN_NAMES, FRAMES_PER_VIDEO, synthesize
from fasd.errors import FasdError

FRAMES = 72  # six subjects: 3 train, 1 val, 2 test
SIZE = 48


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize(tmp_path_factory.mktemp("synth"), domains=3, frames=FRAMES, size=SIZE, seed=0,
                      progress=False)


def images(path: Path) -> np.ndarray:
    with h5py.File(path, "r") as handle:
        return handle["images"][()]


def test_writes_one_pack_per_domain_and_a_registry(bench: Path) -> None:
    assert bench.name == "fasd.toml"
    registry = load_registry(bench)
    assert registry.domains == ["alpha", "beta", "gamma"] == list(DOMAIN_NAMES[:3])
    for name, entry in registry.datasets.items():
        assert entry.format == "hdf5" and entry.path == (bench.parent / f"{name}.h5").resolve()
        source = open_source(entry)
        assert source.name == name and len(source) == FRAMES
        assert source.read_image(0).shape == (SIZE, SIZE, 3)
        with h5py.File(entry.path, "r") as handle:
            assert handle.attrs["source"] == "synthetic" and handle.attrs["dataset"] == name
    assert "path = \"alpha.h5\"" in bench.read_text()  # relative, so the folder can move


def test_protocols_resolve(bench: Path) -> None:
    registry = load_registry(bench)
    protocol = registry.protocol("holdout-gamma")
    assert protocol.sources == ("alpha", "beta") and protocol.target == "gamma"
    assert registry.protocol("alpha-to-beta").sources == ("alpha",)


@pytest.mark.parametrize("domain", ["alpha", "beta", "gamma"])
def test_metadata(bench: Path, domain: str) -> None:
    table = HDF5FrameSource(bench.parent / f"{domain}.h5").table
    assert len(set(table.frame_id)) == FRAMES
    assert all(frame_id.startswith(f"{domain}_") for frame_id in table.frame_id)
    assert (table.label == LABEL_LIVE).sum() == FRAMES // 3  # one live video in three
    live = table.label == LABEL_LIVE
    assert set(table.attack_type[live]) == {""}
    assert set(table.attack_type[~live]) <= {"print", "replay", "mask"} and "" not in table.attack_type[~live]
    for split in SPLITS:  # every split holds both classes
        in_split = table.split == split
        assert set(table.label[in_split]) == {0, 1}, split
    assert (table.split == "train").sum() > (table.split == "test").sum() > (table.split == "val").sum()
    videos = {}
    for video, split, label, attack in zip(table.video_id, table.split, table.label, table.attack_type):
        videos.setdefault(video, set()).add((split, label, attack))
    assert all(len(values) == 1 for values in videos.values())  # no video crosses splits or changes label
    assert sorted(np.unique(table.video_id, return_counts=True)[1]) == [FRAMES_PER_VIDEO] * len(videos)


def test_frames_of_a_video_are_alike(bench: Path) -> None:
    source = HDF5FrameSource(bench.parent / "alpha.h5")
    frames = images(source.path).astype(np.float32)
    first = np.flatnonzero(np.r_[True, source.table.video_id[1:] != source.table.video_id[:-1]])
    within = np.mean([np.abs(frames[i] - frames[i + 1]).mean() for i in first])
    across = np.mean([np.abs(frames[i] - frames[j]).mean() for i, j in zip(first[:-1], first[1:])])
    assert within < 0.5 * across


def test_same_seed_same_images_other_seed_other_images(bench: Path, tmp_path: Path) -> None:
    again = synthesize(tmp_path / "again", domains=3, frames=FRAMES, size=SIZE, seed=0, progress=False)
    other = synthesize(tmp_path / "other", domains=1, frames=FRAMES, size=SIZE, seed=1, progress=False)
    for name in ("alpha", "gamma"):
        np.testing.assert_array_equal(images(again.parent / f"{name}.h5"), images(bench.parent / f"{name}.h5"))
    assert not np.array_equal(images(other.parent / "alpha.h5"), images(bench.parent / "alpha.h5"))
    assert not np.array_equal(images(bench.parent / "alpha.h5"), images(bench.parent / "beta.h5"))


def test_frame_count_need_not_fill_whole_subjects(tmp_path: Path) -> None:
    config = synthesize(tmp_path, domains=4, frames=41, size=32, seed=3, progress=False)
    registry = load_registry(config)
    assert registry.domains == ["alpha", "beta", "gamma", "delta"]
    assert [len(open_source(registry.dataset(name))) for name in registry.domains] == [41] * 4


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"domains": 0}, "--domains must be between 1 and 8"),
    ({"domains": 9}, "--domains must be between 1 and 8"),
    ({"frames": 10}, "--frames must be at least 36"),
    ({"size": 16}, "--size must be at least 32"),
    ({"seed": -1}, "--seed must be a non-negative integer"),
])
def test_rejects_bad_arguments(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(FasdError, match=message):
        synthesize(tmp_path, **{"progress": False, **kwargs})


def auc(score: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a positive scores above a negative (ties count half)."""
    diff = score[positive][:, None] - score[~positive][None, :]
    return float((diff > 0).mean() + 0.5 * (diff == 0).mean())


def test_live_and_spoof_differ_in_high_frequency_energy(tmp_path: Path) -> None:
    """A one-number texture feature separates live from spoof in a domain: the cues are really there."""
    config = synthesize(tmp_path, domains=1, frames=120, size=112, seed=0, progress=False)
    source = open_source(load_registry(config).dataset("alpha"))
    gray = images(source.path).astype(np.float32).mean(axis=-1)
    laplacian = (4 * gray[:, 1:-1, 1:-1] - gray[:, :-2, 1:-1] - gray[:, 2:, 1:-1]
                 - gray[:, 1:-1, :-2] - gray[:, 1:-1, 2:])
    energy = np.abs(laplacian).mean(axis=(1, 2))
    separation = auc(energy, source.table.label == LABEL_LIVE)
    assert max(separation, 1 - separation) > 0.75
