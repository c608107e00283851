"""The synthetic benchmark: packs, metadata, registry, determinism, and the design of the default (``shared``)
world checked with oracle features: one spoof cue present in every domain, a nuisance that flips between domains."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from fasd.config import load_registry
from fasd.constants import LABEL_LIVE, SPLITS
from fasd.data.hdf5_pack import HDF5FrameSource
from fasd.data.open_source import open_source
from fasd.data.synth import DOMAIN_NAMES, FRAMES_PER_VIDEO, WORLDS, synthesize
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


def cue_energy(frames: np.ndarray) -> np.ndarray:
    """The oracle feature of the shared cue: log energy of the grey image at periods 3.3-7.5 px near the x and y
    axes of the spectrum (a 0° pixel grid has its energy there, a 45° halftone screen too) over the energy at
    those periods in other directions (faces and backgrounds spread theirs over every direction)."""
    grey = frames.astype(np.float32).mean(axis=-1)
    power = np.abs(np.fft.fft2(grey - grey.mean(axis=(1, 2), keepdims=True))) ** 2
    fy, fx = np.fft.fftfreq(grey.shape[1])[:, None], np.fft.fftfreq(grey.shape[2])[None, :]
    radius = np.hypot(fx, fy)
    band = (radius > 1 / 7.5) & (radius < 1 / 3.3)
    near_axis = np.minimum(np.abs(fx), np.abs(fy)) < 0.02
    return np.log(power[:, band & near_axis].sum(axis=1) / power[:, band & ~near_axis].sum(axis=1))


def saturation(frames: np.ndarray) -> np.ndarray:
    """Mean per-pixel (max - min) over the channels: what a flat medium lowers and a vivid one raises."""
    frames = frames.astype(np.float32)
    return (frames.max(axis=-1) - frames.min(axis=-1)).mean(axis=(1, 2))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every domain of the default world at the demo's frame size: name -> (frames, live mask)."""
    config = synthesize(tmp_path_factory.mktemp("world"), domains=len(DOMAIN_NAMES), frames=72, size=112, seed=0,
                        progress=False)
    domains = {}
    for name, entry in load_registry(config).datasets.items():
        source = open_source(entry)
        domains[name] = (images(source.path), source.table.label == LABEL_LIVE)
    return domains


def test_the_shared_cue_separates_live_from_spoof_the_same_way_in_every_domain(world) -> None:
    """The oracle feature ranks spoofs above lives in every domain, the held-out ones included: the cue is the same
    everywhere (its level is not: each camera shifts it, which is the nuisance a model must learn to ignore)."""
    for name, (frames, live) in world.items():
        assert auc(cue_energy(frames), ~live) > 0.6, name


def test_the_attack_media_look_separates_the_classes_in_opposite_directions(world) -> None:
    """The nuisance a two-domain model can latch onto: alpha's and beta's media are desaturated, gamma's vivid."""
    for name in ("alpha", "beta", "epsilon"):
        frames, live = world[name]
        assert auc(saturation(frames), ~live) < 0.3, name
    for name in ("gamma", "theta"):
        frames, live = world[name]
        assert auc(saturation(frames), ~live) > 0.65, name


def test_the_cues_world_is_fasd_0_2s(tmp_path: Path) -> None:
    config = synthesize(tmp_path, domains=3, frames=72, size=32, seed=0, progress=False, world="cues")
    attacks = set(open_source(load_registry(config).dataset("beta")).table.attack_type)
    assert "mask" in attacks  # only the cues world has masks
    shared = synthesize(tmp_path / "shared", domains=1, frames=72, size=32, seed=0, progress=False)
    assert not np.array_equal(images(config.parent / "alpha.h5"), images(shared.parent / "alpha.h5"))
    assert set(WORLDS.all()) == {"shared", "cues"}


def test_unknown_world_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(FasdError, match="^unknown --world 'nope'; registered: shared, cues$"):
        synthesize(tmp_path, world="nope", progress=False)
