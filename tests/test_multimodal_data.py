"""Multimodal frames: packs with depth/IR and a modality mask, pack validation, MMDG ingest, multimodal synth."""

from __future__ import annotations

import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from fasd.config import load_registry
from fasd.constants import LABEL_LIVE, LABEL_SPOOF, MODALITIES, SPLITS
from fasd.data.folder import FolderFrameSource
from fasd.data.hdf5_pack import HDF5FrameSource, PackWriter
from fasd.data.ingest import run_ingest
from fasd.data.open_source import open_source
from fasd.data.synth import synthesize
from fasd.errors import FasdError

SIZE = 8


def image(value: int, size: int = SIZE) -> np.ndarray:
    """A frame whose pixels all differ and encode ``value`` (so swapped or shifted frames are caught)."""
    return ((np.arange(size * size * 3).reshape(size, size, 3) + 37 * value) % 256).astype(np.uint8)


def write_pack(path: Path, count: int = 4, modalities=MODALITIES, present=None) -> dict[str, np.ndarray]:
    arrays = {name: np.stack([image(10 * offset + i) for i in range(count)])
              for offset, name in enumerate(MODALITIES) if name in modalities}
    extra = {name: arrays[name] for name in ("depth", "ir") if name in arrays}
    with PackWriter(path, dataset="mm", size=SIZE, source="test", crop_policy="none", modalities=modalities) as pack:
        pack.append(arrays["rgb"], [f"f{i}" for i in range(count)], [i % 2 for i in range(count)],
                    [SPLITS[i % 3] for i in range(count)], [f"v{i // 2}" for i in range(count)],
                    ["" if i % 2 else "print" for i in range(count)], **extra,
                    **({"present": present} if present is not None else {}))
    return arrays


# --- packs with depth, IR and a modality mask ---------------------------------------------------------


def test_multimodal_pack_round_trip_with_absent_modalities(tmp_path: Path) -> None:
    present = np.array([[1, 1, 1], [1, 0, 1], [1, 1, 0], [0, 1, 1]], dtype=bool)
    arrays = write_pack(tmp_path / "mm.h5", present=present)
    source = HDF5FrameSource(tmp_path / "mm.h5")
    assert source.modalities == MODALITIES
    for row in range(4):
        frames = source.read_modalities(row)
        assert set(frames) == {*MODALITIES, "mask"}
        np.testing.assert_array_equal(frames["mask"], present[row])
        for index, name in enumerate(MODALITIES):  # an absent modality reads as zeros, whatever is stored
            expected = arrays[name][row] if present[row, index] else np.zeros((SIZE, SIZE, 3), np.uint8)
            np.testing.assert_array_equal(frames[name], expected)
            assert frames[name].dtype == np.uint8
        np.testing.assert_array_equal(source.read_image(row), frames["rgb"])
    with h5py.File(tmp_path / "mm.h5") as handle:
        assert handle["depth"].chunks == (1, SIZE, SIZE, 3) and handle["modalities"].dtype == bool


def test_mask_defaults_to_every_stored_modality(tmp_path: Path) -> None:
    arrays = write_pack(tmp_path / "d.h5", modalities=("rgb", "depth"))
    source = HDF5FrameSource(tmp_path / "d.h5")
    assert source.modalities == ("rgb", "depth")
    frames = source.read_modalities(2)
    assert frames["mask"].tolist() == [True, True, False]
    np.testing.assert_array_equal(frames["depth"], arrays["depth"][2])
    assert not frames["ir"].any()


def test_rgb_only_sources_read_as_rgb_with_zero_depth_and_ir(tmp_path: Path) -> None:
    arrays = write_pack(tmp_path / "rgb.h5", modalities=("rgb",))
    with h5py.File(tmp_path / "rgb.h5") as handle:
        assert set(handle) == {"images", "label", "frame_id", "split", "video_id", "attack_type"}  # v0.1 layout
    Image.fromarray(image(5)).save(tmp_path / "a.png")
    (tmp_path / "manifest.csv").write_text("frame_id,path,label,split\na,a.png,1,train\n")
    for source, row, rgb in ((HDF5FrameSource(tmp_path / "rgb.h5"), 1, arrays["rgb"][1]),
                             (FolderFrameSource(tmp_path / "manifest.csv"), 0, image(5))):
        assert source.modalities == ("rgb",)
        frames = source.read_modalities(row)
        np.testing.assert_array_equal(frames["rgb"], rgb)
        assert frames["depth"].shape == frames["ir"].shape == rgb.shape and not frames["depth"].any()
        assert frames["mask"].tolist() == [True, False, False]


def test_writer_refuses_arrays_the_pack_does_not_declare(tmp_path: Path) -> None:
    with PackWriter(tmp_path / "p.h5", dataset="p", size=SIZE, source="t", crop_policy="none") as pack:
        with pytest.raises(ValueError, match="this pack stores rgb"):
            pack.append(image(0)[None], ["a"], [1], ["train"], [""], [""], depth=image(1)[None])
    with PackWriter(tmp_path / "q.h5", dataset="q", size=SIZE, source="t", crop_policy="none",
                    modalities=MODALITIES) as pack:
        with pytest.raises(ValueError, match="this pack stores rgb, depth, ir"):
            pack.append(image(0)[None], ["a"], [1], ["train"], [""], [""], depth=image(1)[None])
        with pytest.raises(ValueError, match="differ in length"):
            pack.append(image(0)[None], ["a", "b"], [1], ["train"], [""], [""], depth=image(1)[None],
                        ir=image(2)[None])
    with pytest.raises(ValueError, match="must include rgb"):
        PackWriter(tmp_path / "r.h5", dataset="r", size=SIZE, source="t", crop_policy="none", modalities=("depth",))


# --- pack validation (issue 12): one line naming the pack and the problem ------------------------------


def _replace(handle: h5py.File, name: str, values) -> None:
    del handle[name]
    handle[name] = values


CORRUPTIONS = {
    "label 2": (lambda h: _replace(h, "label", np.array([1, 0, 2, 0], np.int8)),
                r"frame 'f2' \(row 2\) has label 2; labels must be 0 \(spoof\) or 1 \(live\)"),
    "float labels": (lambda h: _replace(h, "label", np.array([1, 0, 0.5, 0])), "labels must be integers"),
    "short label": (lambda h: _replace(h, "label", np.array([1, 0, 1], np.int8)),
                    r"per-frame arrays differ in length \(images 4, depth 4, ir 4, label 3"),
    "short ir": (lambda h: _replace(h, "ir", np.zeros((3, SIZE, SIZE, 3), np.uint8)), "differ in length"),
    "grey images": (lambda h: _replace(h, "images", np.zeros((4, SIZE, SIZE), np.uint8)),
                    r"images must be uint8 \(N, H, W, 3\), got uint8 \(4, 8, 8\)"),
    "float images": (lambda h: _replace(h, "images", np.zeros((4, SIZE, SIZE, 3), np.float32)),
                     "images must be uint8"),
    "depth of another size": (lambda h: _replace(h, "depth", np.zeros((4, 4, 4, 3), np.uint8)),
                              r"depth must match images \(uint8 \(4, 8, 8, 3\)\), got uint8 \(4, 4, 4, 3\)"),
    "duplicate ids": (lambda h: _replace(h, "frame_id", np.array(["f0", "f1", "f1", "f3"], dtype=object)),
                      "frame_id 'f1' occurs 2 times; frame IDs must be unique"),
    "empty id": (lambda h: _replace(h, "frame_id", np.array(["f0", "", "f2", "f3"], dtype=object)),
                 "row 1 has an empty frame_id"),
    "numeric ids": (lambda h: _replace(h, "frame_id", np.arange(4)), "frame_id must hold strings"),
    "bad split": (lambda h: _replace(h, "split", np.array(["train", "dev", "val", "test"], dtype=object)),
                  "frame 'f1' \\(row 1\\) has split 'dev'; splits are train, val, test"),
    "mask of ints": (lambda h: _replace(h, "modalities", np.ones((4, 3), np.int8)),
                     r"modalities must be an \(N, 3\) bool mask"),
    "empty mask row": (lambda h: h["modalities"].__setitem__(3, [False, False, False]),
                       "frame 'f3' \\(row 3\\) has no modality"),
    "scalar label": (lambda h: _replace(h, "label", 1), "'label' must be a per-frame array"),
    "group for images": (lambda h: (h.__delitem__("images"), h.create_group("images")),
                         "'images' must be a per-frame array"),
}


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_bad_packs_are_refused_with_one_line(tmp_path: Path, corruption: str) -> None:
    path = tmp_path / "bad.h5"
    write_pack(path)
    change, message = CORRUPTIONS[corruption]
    with h5py.File(path, "a") as handle:
        change(handle)
    with pytest.raises(FasdError, match=message) as error:
        HDF5FrameSource(path)
    assert str(error.value).startswith(f"frame pack {path}: ") and "\n" not in str(error.value)


def test_mask_marking_an_unstored_modality_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.h5"
    write_pack(path, modalities=("rgb", "ir"))
    with h5py.File(path, "a") as handle:
        handle["modalities"][1] = [True, True, True]
    with pytest.raises(FasdError, match="frame 'f1' \\(row 1\\) marks depth present but the pack has no depth"):
        HDF5FrameSource(path)


def test_not_a_pack(tmp_path: Path) -> None:
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(FasdError, match="cannot read HDF5 frame pack"):
        HDF5FrameSource(tmp_path / "junk.h5")
    with h5py.File(tmp_path / "empty.h5", "w"):
        pass
    with pytest.raises(FasdError, match="is not a fasd frame pack \\(missing images, label"):
        HDF5FrameSource(tmp_path / "empty.h5")


def texts(min_size: int = 0) -> st.SearchStrategy[str]:
    """Any text HDF5 can store as a variable-length UTF-8 string (no NUL, no lone surrogate)."""
    return st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
                   min_size=min_size, max_size=12)


frames_strategy = st.lists(st.tuples(texts(1), st.sampled_from([LABEL_SPOOF, LABEL_LIVE]), st.sampled_from(SPLITS),
                                     texts(), texts(),
                                     st.lists(st.booleans(), min_size=3, max_size=3).filter(any)),
                           min_size=1, max_size=8, unique_by=lambda frame: frame[0])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=frames_strategy, seed=st.integers(0, 2**31))
def test_property_valid_packs_round_trip(frames: list, seed: int) -> None:
    """Any valid content reads back exactly: metadata, pixels, and zeros where the mask says absent."""
    ids, labels, splits, videos, attacks, masks = (list(column) for column in zip(*frames))
    rng = np.random.default_rng(seed)
    pixels = {name: rng.integers(0, 256, (len(ids), SIZE, SIZE, 3), dtype=np.uint8) for name in MODALITIES}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "p.h5"
        with PackWriter(path, dataset="p", size=SIZE, source="t", crop_policy="none", modalities=MODALITIES) as pack:
            pack.append(pixels["rgb"], ids, labels, splits, videos, attacks, depth=pixels["depth"],
                        ir=pixels["ir"], present=np.array(masks))
        source = HDF5FrameSource(path)
        assert source.table.frame_id.tolist() == ids and source.table.label.tolist() == labels
        assert source.table.split.tolist() == splits and source.table.video_id.tolist() == videos
        assert source.table.attack_type.tolist() == attacks
        for row, mask in enumerate(masks):
            read = source.read_modalities(row)
            assert read["mask"].tolist() == mask
            for index, name in enumerate(MODALITIES):
                np.testing.assert_array_equal(read[name], pixels[name][row] * mask[index])


MUTATIONS = st.sampled_from(["label", "length", "dtype", "duplicate", "split", "mask", "depth_shape"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=frames_strategy.filter(lambda f: len(f) >= 2), mutation=MUTATIONS, row=st.integers(0, 7),
       value=st.integers(-128, 127).filter(lambda v: v not in (0, 1)))
def test_property_every_corruption_is_one_fasd_error(frames: list, mutation: str, row: int, value: int) -> None:
    """Whatever is broken and wherever, the reader raises FasdError naming the pack, never anything else."""
    ids = [frame[0] for frame in frames]
    count, row = len(ids), row % len(ids)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "p.h5"
        with PackWriter(path, dataset="p", size=SIZE, source="t", crop_policy="none", modalities=MODALITIES) as pack:
            zeros = np.zeros((count, SIZE, SIZE, 3), np.uint8)
            pack.append(zeros, ids, [f[1] for f in frames], [f[2] for f in frames], [f[3] for f in frames],
                        [f[4] for f in frames], depth=zeros, ir=zeros)
        with h5py.File(path, "a") as handle:
            if mutation == "label":
                handle["label"][row] = value
            elif mutation == "length":
                name = ("label", "frame_id", "split", "video_id", "attack_type", "depth", "ir", "modalities")[row]
                handle[name].resize(count - 1, axis=0)
            elif mutation == "dtype":
                _replace(handle, "images", np.zeros((count, SIZE, SIZE, 3), np.uint16))
            elif mutation == "duplicate":
                handle["frame_id"][(row + 1) % count] = ids[row]
            elif mutation == "split":
                handle["split"][row] = f"x{value}"
            elif mutation == "mask":
                handle["modalities"][row] = [False, False, False]
            else:
                _replace(handle, "depth", np.zeros((count, SIZE, SIZE + 1, 3), np.uint8))
        with pytest.raises(FasdError, match=f"^frame pack {path}: "):
            HDF5FrameSource(path)


# --- fasd ingest mmdg ----------------------------------------------------------------------------------

COLOURS = {"rgb": (200, 40, 20), "depth": (90, 90, 90), "ir": (160, 160, 160)}


def flat_jpeg(path: Path, colour, size: int = 16) -> np.ndarray:
    """A flat-colour JPEG (JPEG keeps a flat colour to within a grey level); returns its decoded pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), colour).save(path, quality=95)
    with Image.open(path) as decoded:
        return np.asarray(decoded.convert("RGB"))


def build_mmdg(root: Path) -> dict[str, np.ndarray]:
    """W lists (JPEG triples, one missing depth, one malformed, one repeated) and P lists (PADISI .npz)."""
    expected = {}
    for video, frame in (("live01", 1), ("live01", 2), ("print07", 1), ("replay02", 5), ("print09", 1)):
        for name in MODALITIES:
            shade = tuple(min(255, c + 10 * frame) for c in COLOURS[name])
            expected[f"W/{video}/{name}_{frame}"] = flat_jpeg(root / "W" / video / f"{name}_{frame}.jpg", shade)
    (root / "W" / "replay02" / "depth_5.jpg").unlink()
    lists = root / "lists"
    lists.mkdir()
    (lists / "W-train.txt").write_text(
        "W/live01/rgb_1.jpg W/live01/depth_1.jpg W/live01/ir_1.jpg 1\n"
        "W/print07/rgb_1.jpg W/print07/depth_1.jpg W/print07/ir_1.jpg 0\n"
        "\n"
        "W/live01/rgb_2.jpg W/live01/depth_2.jpg W/live01/ir_2.jpg 1\n")
    (lists / "W-val.txt").write_text("W/replay02/rgb_5.jpg W/replay02/depth_5.jpg W/replay02/ir_5.jpg 0\n"
                                     "W/print09/rgb_1.jpg W/print09/depth_1.jpg 0\n")
    (lists / "W-test.txt").write_text("W/print09/rgb_1.jpg W/print09/depth_1.jpg W/print09/ir_1.jpg 0\n"
                                      "W/live01/rgb_1.jpg W/live01/depth_1.jpg W/live01/ir_1.jpg 1\n"
                                      "W/print09/rgb_1.jpg W/print09/depth_1.jpg W/print09/ir_1.jpg 2\n")
    bands = np.stack([np.full((16, 16), value, np.float32) for value in (0.2, 0.4, 0.6, 0.8, 1.0)])
    (root / "P").mkdir()
    np.savez(root / "P" / "s1.npz", data=bands[None])  # (1, 5, H, W) as PADISI stores it
    np.savez(root / "P" / "s2.npz", bands[::-1].copy())  # the only array, no 'data' key, 3-D
    (root / "P" / "s3.npz").write_bytes(b"not a zip")
    (lists / "P-train.txt").write_text("P/s1.npz P/s1.npz P/s1.npz 1\nP/s2.npz 0\n")
    (lists / "P-test.txt").write_text("P/s3.npz 0\n")
    return expected


@pytest.fixture(scope="module")
def mmdg_root(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp("mmdg")
    return root, build_mmdg(root)


def test_mmdg_lists_become_a_multimodal_pack(mmdg_root, tmp_path: Path) -> None:
    root, expected = mmdg_root
    summary = run_ingest("mmdg", root, tmp_path / "w.h5", size=16, lists=root / "lists", dataset="W",
                         progress=False)
    source = HDF5FrameSource(tmp_path / "w.h5")
    table = source.table
    assert source.modalities == MODALITIES
    assert table.frame_id.tolist() == ["W/live01/rgb_1", "W/print07/rgb_1", "W/live01/rgb_2", "W/print09/rgb_1"]
    assert table.label.tolist() == [LABEL_LIVE, LABEL_SPOOF, LABEL_LIVE, LABEL_SPOOF]
    assert table.split.tolist() == ["train", "train", "train", "test"]
    assert table.video_id.tolist() == ["W/live01/rgb", "W/print07/rgb", "W/live01/rgb", "W/print09/rgb"]
    assert set(table.attack_type) == {""}
    for row, frame_id in enumerate(table.frame_id):
        frames = source.read_modalities(row)
        assert frames["mask"].all()
        for name in MODALITIES:  # size unchanged: the decoded JPEG, pixel for pixel
            np.testing.assert_array_equal(frames[name], expected[frame_id.replace("rgb_", f"{name}_")])
    assert (summary.unit, summary.seen, summary.frames) == ("samples", 8, 4)
    assert sorted((s.item, s.reason) for s in summary.skipped) == [
        ("W-test.txt:2", "repeats an earlier sample"),
        ("W-test.txt:3", "malformed line (expected 'rgb depth ir label', label 0 or 1)"),
        ("W-val.txt:1 (W/replay02/depth_5.jpg)", "file missing"),
        ("W-val.txt:2", "malformed line (expected 'rgb depth ir label', label 0 or 1)")]
    text = summary.format()
    assert "Skipped 4 samples" in text and "file missing x1 (e.g. W-val.txt:1 (W/replay02/depth_5.jpg))" in text


def test_mmdg_resizes_every_modality(mmdg_root, tmp_path: Path) -> None:
    root, _ = mmdg_root
    run_ingest("mmdg", root, tmp_path / "w.h5", size=8, lists=root / "lists", dataset="w", progress=False)
    frames = HDF5FrameSource(tmp_path / "w.h5").read_modalities(1)  # print07, frame 1: flat colours
    for name in MODALITIES:
        assert frames[name].shape == (8, 8, 3)
        shade = np.array([min(255, c + 10) for c in COLOURS[name]])
        assert np.abs(frames[name].astype(int) - shade).max() <= 3


def test_padisi_npz_samples(mmdg_root, tmp_path: Path) -> None:
    root, _ = mmdg_root
    summary = run_ingest("mmdg", root, tmp_path / "p.h5", size=16, lists=root / "lists", dataset="P",
                         progress=False)
    source = HDF5FrameSource(tmp_path / "p.h5")
    assert source.table.frame_id.tolist() == ["P/s1", "P/s2"] and source.table.label.tolist() == [1, 0]
    assert source.table.video_id.tolist() == ["P/s1", "P/s2"]
    def grey(value: float) -> np.ndarray:
        return np.full((16, 16, 3), round(value * 255), np.uint8)

    first, second = source.read_modalities(0), source.read_modalities(1)
    # s1 bands 0.2 0.4 0.6 | IR 0.8 | depth 1.0; s2 holds them reversed.
    np.testing.assert_array_equal(first["rgb"], np.broadcast_to(np.array([51, 102, 153], np.uint8), (16, 16, 3)))
    np.testing.assert_array_equal(first["ir"], grey(0.8))
    np.testing.assert_array_equal(first["depth"], grey(1.0))
    np.testing.assert_array_equal(second["rgb"], np.broadcast_to(np.array([255, 204, 153], np.uint8), (16, 16, 3)))
    np.testing.assert_array_equal(second["ir"], grey(0.4))
    np.testing.assert_array_equal(second["depth"], grey(0.2))
    assert [(s.item, s.reason) for s in summary.skipped] == [("P-test.txt:1", "unreadable npz")]


def test_mmdg_needs_a_dataset_when_the_folder_holds_several(mmdg_root, tmp_path: Path) -> None:
    root, _ = mmdg_root
    with pytest.raises(FasdError, match="holds the lists of P, W: choose one with --dataset"):
        run_ingest("mmdg", root, tmp_path / "x.h5", lists=root / "lists", progress=False)
    with pytest.raises(FasdError, match="--dataset S: no S-\\{train,val,test\\}.txt"):
        run_ingest("mmdg", root, tmp_path / "x.h5", lists=root / "lists", dataset="S", progress=False)
    with pytest.raises(FasdError, match="is not an MMDG list folder"):
        run_ingest("mmdg", root, tmp_path / "x.h5", progress=False)  # --lists defaults to the root
    with pytest.raises(FasdError, match="--lists applies to mmdg only, not mcio"):
        run_ingest("mcio", root, tmp_path / "x.h5", lists=root / "lists", progress=False)
    with pytest.raises(FasdError, match="--dataset applies to mmdg only, not oulu"):
        run_ingest("oulu", root, tmp_path / "x.h5", dataset="W", progress=False)


def test_mmdg_through_the_cli_registers_the_pack(mmdg_root, tmp_path: Path) -> None:
    from helpers import fasd

    root, _ = mmdg_root
    config = tmp_path / "fasd.toml"
    result = fasd("ingest", "mmdg", "--root", root, "--lists", root / "lists", "--dataset", "W", "--out",
                  tmp_path / "wmca.h5", "--size", 16, "--register", "wmca", "--config", config)
    assert result.exit_code == 0, result.output
    assert "4 frames written" in result.output and "registered 'wmca'" in result.output
    source = open_source(load_registry(config).dataset("wmca"))
    assert source.modalities == MODALITIES and len(source) == 4
    result = fasd("ingest", "mmdg", "--root", root, "--lists", root / "lists", "--out", tmp_path / "x.h5")
    assert result.exit_code == 2 and "choose one with --dataset" in result.output


# --- fasd synth --modalities ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def multimodal_synth(tmp_path_factory) -> Path:
    return synthesize(tmp_path_factory.mktemp("mm"), domains=3, frames=96, size=48, seed=0, progress=False,
                      modalities=MODALITIES)


def test_synth_rgb_does_not_depend_on_the_other_modalities(multimodal_synth: Path, tmp_path: Path) -> None:
    rgb_only = synthesize(tmp_path, domains=3, frames=96, size=48, seed=0, progress=False)
    for name in ("alpha", "beta", "gamma"):
        with (h5py.File(rgb_only.parent / f"{name}.h5") as plain,
              h5py.File(multimodal_synth.parent / f"{name}.h5") as mm):
            np.testing.assert_array_equal(plain["images"][()], mm["images"][()])
            assert "depth" not in plain and mm["depth"].shape == mm["images"].shape == mm["ir"].shape
            assert mm["modalities"][()].all()
            assert [mm[k].asstr()[()].tolist() for k in ("frame_id", "split")] == \
                [plain[k].asstr()[()].tolist() for k in ("frame_id", "split")]


def test_synth_multimodal_is_deterministic(multimodal_synth: Path, tmp_path: Path) -> None:
    again = synthesize(tmp_path, domains=1, frames=96, size=48, seed=0, progress=False, modalities=("rgb", "ir"))
    with h5py.File(again.parent / "alpha.h5") as second, h5py.File(multimodal_synth.parent / "alpha.h5") as first:
        assert "depth" not in second
        np.testing.assert_array_equal(second["ir"][()], first["ir"][()])


def test_synth_modalities_through_the_cli(tmp_path: Path) -> None:
    from helpers import assert_one_line, fasd

    result = fasd("synth", tmp_path / "mm", "--domains", 1, "--frames", 36, "--size", 32, "--modalities", "rgb,depth")
    assert result.exit_code == 0, result.output
    source = open_source(load_registry(tmp_path / "mm" / "fasd.toml").dataset("alpha"))
    assert source.modalities == ("rgb", "depth") and source.read_modalities(0)["mask"].tolist() == [1, 1, 0]
    for modalities in ("rgb,thermal", "depth"):
        assert_one_line(fasd("synth", tmp_path / "bad", "--modalities", modalities),
                          "choose among rgb, depth, ir, rgb included")


def auc(score: np.ndarray, positive: np.ndarray) -> float:
    diff = score[positive][:, None] - score[~positive][None, :]
    return float((diff > 0).mean() + 0.5 * (diff == 0).mean())


def test_synth_depth_and_ir_carry_the_physical_cues(multimodal_synth: Path) -> None:
    """Per domain, by hand-made one-number features: a live face has depth relief (centre closer than its
    cheeks), prints and screens are flat; a screen is dark in IR. And the sensors differ between domains."""
    wall_depth = []
    for name in ("alpha", "beta", "gamma"):
        source = open_source(load_registry(multimodal_synth).dataset(name))
        with h5py.File(source.path) as handle:
            depth = handle["depth"][()][..., 0].astype(np.float32)
            ir = handle["ir"][()][..., 0].astype(np.float32)
        kind = source.table.attack_type
        flat = np.isin(kind, ("print", "replay"))
        centre = np.median(depth[:, 18:30, 18:30], axis=(1, 2))
        ring = np.median(np.concatenate([depth[:, 18:30, 8:14], depth[:, 18:30, 34:40]], axis=1), axis=(1, 2))
        relief = centre - ring
        live = kind == ""
        assert auc(relief[live | flat], live[live | flat]) > 0.9, name
        screen = kind == "replay"
        assert ir[screen, 16:32, 16:32].mean() < 0.7 * ir[live, 16:32, 16:32].mean(), name
        wall_depth.append(np.median(depth[live][:, :6, :6]))
    assert max(wall_depth) - min(wall_depth) > 15  # each domain's depth camera has its own offset
