"""fasd ingest on tiny look-alikes of OULU-NPU, Replay-Attack, CelebA-Spoof and the FLIP/MCIO folders."""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

pytest.importorskip("av")

import fasd.faces.crop
from fasd.constants import LABEL_LIVE, LABEL_SPOOF
from fasd.data.hdf5_pack import HDF5FrameSource, PackWriter
from fasd.data.ingest import run_ingest
from fasd.data.ingest import geometry
from fasd.data.ingest.geometry import crop_square, sample_evenly
from fasd.errors import FasdError
import ingest_fixtures as fx

SIZE = 32


@pytest.fixture(scope="module")
def oulu_root(tmp_path_factory) -> Path:
    return fx.build_oulu(tmp_path_factory.mktemp("oulu"))


@pytest.fixture(scope="module")
def replay_root(tmp_path_factory) -> Path:
    return fx.build_replay(tmp_path_factory.mktemp("replay"))


def ingest(kind: str, root: Path, tmp_path: Path, **kwargs):
    out = tmp_path / f"{kind}.h5"
    summary = run_ingest(kind, root, out, size=SIZE, progress=False, overwrite=True, **kwargs)  # tests re-ingest
    return summary, HDF5FrameSource(out)


def by_video(source: HDF5FrameSource) -> dict[str, dict]:
    """video_id -> its frame ids, and its (unique) label, split and attack type."""
    table, videos = source.table, {}
    for row, video in enumerate(table.video_id):
        entry = videos.setdefault(video, {"frames": [], "meta": set()})
        entry["frames"].append(table.frame_id[row])
        entry["meta"].add((int(table.label[row]), table.split[row], table.attack_type[row]))
    return videos


def bright(image: np.ndarray) -> np.ndarray:
    return image.mean(axis=2) > 140  # markers are 255, background 30; mpeg4 blurs edges


def assert_marker_centred(image: np.ndarray) -> None:
    """A bright marker sits in the central quarter of the crop and nothing bright lies outside it."""
    mask = bright(image)
    ys, xs = np.nonzero(mask)
    assert len(xs) > 0, "no marker in the crop"
    centre = (SIZE - 1) / 2
    assert abs(xs.mean() - centre) < SIZE / 8 and abs(ys.mean() - centre) < SIZE / 8
    assert not mask[:, : SIZE // 4].any() and not mask[:, -SIZE // 4:].any()
    assert not mask[: SIZE // 4].any() and not mask[-SIZE // 4:].any()


def test_oulu_labels_splits_and_skips(oulu_root, tmp_path):
    summary, source = ingest("oulu", oulu_root, tmp_path)
    videos = by_video(source)
    assert {video: entry["meta"] for video, entry in videos.items()} == {
        "1_1_01_1": {(LABEL_LIVE, "train", "")}, "1_1_01_2": {(LABEL_SPOOF, "train", "print")},
        "1_2_01_1": {(LABEL_LIVE, "train", "")}, "1_1_21_4": {(LABEL_SPOOF, "val", "replay")},
        "1_1_36_1": {(LABEL_LIVE, "test", "")}}
    assert videos["1_1_01_1"]["frames"] == [f"1_1_01_1/{i:04d}" for i in range(8)]
    assert videos["1_1_01_2"]["frames"] == [f"1_1_01_2/{i:04d}" for i in range(2, 8)]  # zero rows unannotated
    assert (summary.seen, summary.frames, len(source)) == (7, 38, 38)
    assert {(s.item, s.reason) for s in summary.skipped} == {
        ("Test_files/1_1_36_5", "no eye-position file"), ("Test_files/1_1_37_3", "unreadable video")}
    assert "Skipped 2 videos" in summary.format() and "no eye-position file x1" in summary.format()
    with h5py.File(tmp_path / "oulu.h5") as pack:
        assert pack.attrs["source"] == "oulu" and pack.attrs["size"] == SIZE
        assert "eye-anchored" in pack.attrs["crop_policy"] and "0.2" in pack.attrs["crop_policy"]
    assert not (tmp_path / "oulu.h5.partial").exists()


def test_oulu_crop_is_centred_on_the_face(oulu_root, tmp_path):
    _, source = ingest("oulu", oulu_root, tmp_path)
    for row in np.flatnonzero(source.table.video_id == "1_1_01_1"):
        assert_marker_centred(source.read_image(row))  # far marker at (58, 42) is left out


def test_oulu_roll_alignment_levels_the_eyes(oulu_root, tmp_path):
    _, source = ingest("oulu", oulu_root, tmp_path, margin=0.0)
    image = source.read_image(int(np.flatnonzero(source.table.video_id == "1_1_21_4")[0]))
    mask = bright(image)
    # geometry: with margin 0 the eyes sit at x = 0.3 and 0.7 of the side, y = 0.36, whatever the roll
    for x_fraction in (0.3, 0.7):
        half = mask[:, : SIZE // 2] if x_fraction < 0.5 else mask[:, SIZE // 2:]
        ys, xs = np.nonzero(half)
        xs = xs + (0 if x_fraction < 0.5 else SIZE // 2)
        assert abs(xs.mean() - (x_fraction * SIZE - 0.5)) < 1.5
        assert abs(ys.mean() - (0.36 * SIZE - 0.5)) < 1.5


def test_oulu_frames_per_video_sampling(oulu_root, tmp_path):
    _, source = ingest("oulu", oulu_root, tmp_path, frames_per_video=3)
    videos = by_video(source)
    assert videos["1_1_01_1"]["frames"] == ["1_1_01_1/0001", "1_1_01_1/0004", "1_1_01_1/0006"]
    assert videos["1_1_01_2"]["frames"] == ["1_1_01_2/0003", "1_1_01_2/0005", "1_1_01_2/0007"]  # among 2..7
    assert len(source) == 15


def test_oulu_protocols(oulu_root, tmp_path):
    summary, source = ingest("oulu", oulu_root, tmp_path, protocol="Protocol_1")
    assert set(source.table.video_id) == {"1_1_01_1", "1_1_01_2", "1_1_21_4", "1_1_36_1"}
    assert summary.excluded == {"not in protocol Protocol_1": 3}
    summary, source = ingest("oulu", oulu_root, tmp_path, protocol="Protocol_3/1")
    assert {video: entry["meta"] for video, entry in by_video(source).items()} == {
        "1_2_01_1": {(LABEL_LIVE, "train", "")}, "1_1_21_4": {(LABEL_SPOOF, "val", "replay")},
        "1_1_36_1": {(LABEL_LIVE, "test", "")}}
    assert {(s.item, s.reason) for s in summary.skipped} == {
        ("Test_files/1_1_36_5", "no eye-position file"),
        ("Test_files/1_1_36_2", "listed in the protocol but the video is missing")}
    for bad in ("Protocol_3", "Protocol_9", "Protocol_1/2"):
        with pytest.raises(FasdError, match="unknown OULU-NPU protocol"):
            ingest("oulu", oulu_root, tmp_path, protocol=bad)
    with pytest.raises(FasdError, match="protocol list not found"):
        ingest("oulu", oulu_root, tmp_path, protocol="Protocol_2")


def test_parallel_workers_write_the_same_pack(oulu_root, tmp_path):
    _, serial = ingest("oulu", oulu_root, tmp_path / "serial", frames_per_video=2)
    summary, parallel = ingest("oulu", oulu_root, tmp_path / "parallel", frames_per_video=2, workers=2)
    assert list(parallel.table.frame_id) == list(serial.table.frame_id)
    assert all(np.array_equal(parallel.read_image(r), serial.read_image(r)) for r in range(len(serial)))
    assert len(summary.skipped) == 2


def test_replay(replay_root, tmp_path):
    summary, source = ingest("replay", replay_root, tmp_path)
    videos = by_video(source)
    assert {video: entry["meta"] for video, entry in videos.items()} == {
        fx.REPLAY_REAL: {(LABEL_LIVE, "train", "")}, fx.REPLAY_HIGHDEF: {(LABEL_SPOOF, "train", "highdef_photo")},
        fx.REPLAY_MOBILE: {(LABEL_SPOOF, "val", "mobile_video")}}
    assert videos[fx.REPLAY_REAL]["frames"] == [f"{fx.REPLAY_REAL}/{i:04d}" for i in range(2, 8)]  # zero boxes
    assert (summary.seen, summary.frames) == (5, 22)
    assert summary.excluded == {"enroll video": 1}
    assert {(s.item, s.reason) for s in summary.skipped} == {
        (fx.REPLAY_NO_BOXES, "no face-location file"), (fx.REPLAY_FACELESS, "no frame with a face annotation")}
    for row in range(len(source)):
        assert_marker_centred(source.read_image(row))


def test_celeba(tmp_path):
    labels = fx.build_celeba(tmp_path / "celeba")
    train_subject, val_subject = fx.celeba_subjects()
    summary, source = ingest("celeba", tmp_path / "celeba", tmp_path)
    table = source.table
    rows = {frame_id: row for row, frame_id in enumerate(table.frame_id)}
    expected = {f"Data/train/{train_subject}/live/000001": (LABEL_LIVE, "train", "", train_subject),
                f"Data/train/{train_subject}/spoof/000002": (LABEL_SPOOF, "train", "A4", train_subject),
                f"Data/train/{val_subject}/spoof/000003": (LABEL_SPOOF, "val", "phone", val_subject),
                "Data/test/5000/live/000004": (LABEL_LIVE, "test", "", "5000")}
    assert {fid: (int(table.label[r]), table.split[r], table.attack_type[r], table.video_id[r])
            for fid, r in rows.items()} == expected
    assert all(labels[f"{fid}.png"][43] == 1 - label for fid, (label, *_) in expected.items())
    assert (summary.unit, summary.seen, summary.frames) == ("images", 6, 4)
    assert {(s.item, s.reason) for s in summary.skipped} == {
        ("Data/test/5000/spoof/000005.png", "no box file"), ("Data/test/5000/spoof/000006.png", "image missing")}
    for row in range(len(source)):  # the box is scaled from the 224 reference to the 112 x 56 image
        assert_marker_centred(source.read_image(row))


def test_mcio(tmp_path):
    summary, source = ingest("mcio", fx.build_mcio(tmp_path / "mcio"), tmp_path)
    table = source.table
    assert list(table.frame_id) == ["train/real/casia_v1_frame0", "train/real/casia_v1_frame1",
                                    "train/fake/casia_v2_frame0", "test/real/idiap_v3_frame0",
                                    "test/fake/idiap_v4_frame0"]
    assert list(table.label) == [LABEL_LIVE, LABEL_LIVE, LABEL_SPOOF, LABEL_LIVE, LABEL_SPOOF]
    assert list(table.split) == ["train", "train", "train", "test", "test"]
    assert list(table.video_id) == ["train/real/casia_v1", "train/real/casia_v1", "train/fake/casia_v2",
                                    "test/real/idiap_v3", "test/fake/idiap_v4"]  # as the mcio source reads them
    assert [(s.item, s.reason) for s in summary.skipped] == [("test/fake/idiap_v5_frame0.png", "unreadable image")]
    image = source.read_image(3)  # 48 x 32 -> centred 32 x 32 square: the marker stays centred
    assert image.shape == (SIZE, SIZE, 3) and bright(image)[SIZE // 2, SIZE // 2]


@pytest.mark.parametrize("kind", ["oulu", "replay", "celeba", "mcio"])
def test_bad_root_names_the_expected_layout(kind, tmp_path):
    (tmp_path / "junk").mkdir()
    with pytest.raises(FasdError, match="is not a"):
        run_ingest(kind, tmp_path / "junk", tmp_path / "out.h5", progress=False)
    with pytest.raises(FasdError, match="not found"):
        run_ingest(kind, tmp_path / "missing", tmp_path / "out.h5", progress=False)


def test_option_misuse(oulu_root, tmp_path):
    out = tmp_path / "out.h5"
    for kwargs, message in [({"frames_per_video": 2}, "video datasets"), ({"protocol": "Protocol_1"}, "oulu only"),
                            ({"size": 4}, "at least"), ({"margin": -0.1}, "margin")]:
        with pytest.raises(FasdError, match=message):
            run_ingest("mcio", oulu_root, out, progress=False, **kwargs)
    with pytest.raises(FasdError, match="unknown dataset kind"):
        run_ingest("casia", oulu_root, out, progress=False)


def test_missing_pyav_says_what_to_install(oulu_root, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(FasdError, match=r"fasd\[ingest\]"):
        run_ingest("oulu", oulu_root, tmp_path / "out.h5", progress=False)


def test_a_crash_leaves_no_pack(oulu_root, tmp_path, monkeypatch):
    def explode(self, *args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(PackWriter, "append", explode)
    with pytest.raises(RuntimeError, match="disk full"):
        run_ingest("oulu", oulu_root, tmp_path / "out.h5", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_nothing_ingested_is_an_error(tmp_path):
    root = tmp_path / "mcio"
    (root / "train" / "real").mkdir(parents=True)
    (root / "train" / "real" / "x_frame0.png").write_bytes(b"broken")
    with pytest.raises(FasdError, match="no frames ingested.*unreadable image"):
        run_ingest("mcio", root, tmp_path / "out.h5", progress=False)
    assert not (tmp_path / "out.h5").exists()


def test_large_squares_are_preshrunk_without_moving_the_crop(monkeypatch):
    yy, xx = np.mgrid[0:600, 0:800]
    image = np.stack([127 + 120 * np.sin(xx / 40) * np.cos(yy / 30), 127 + 100 * np.sin(yy / 50),
                      np.full_like(xx, 90)], axis=-1).astype(np.uint8)
    fast = geometry.crop_square(image, (420, 330), 330, 24, angle=0.4)  # 330 px -> 13x box filter first
    monkeypatch.setattr(fasd.faces.crop, "PRESHRINK_ABOVE", 10**6)  # the cut every square crop is made by
    direct = geometry.crop_square(image, (420, 330), 330, 24, angle=0.4)
    assert np.abs(fast.astype(int) - direct).mean() < 0.6  # a 3 px shift of the source gives 1.3


def test_crop_square_pads_with_black_and_sample_evenly():
    image = np.full((10, 10, 3), 200, np.uint8)
    crop = crop_square(image, (0, 0), 10, 10)  # centred on the corner: three quarters outside
    assert crop[:4, :4].max() == 0 and crop[7:, 7:].min() > 190
    assert sample_evenly(list(range(10)), 3) == [1, 5, 8]
    assert sample_evenly([4, 7], 5) == [4, 7] and sample_evenly([4, 7], None) == [4, 7]


def test_ingested_packs_cache_and_train_through_the_cli(oulu_root, replay_root, tmp_path, tiny_flip_checkpoint):
    """fasd ingest --register -> fasd cache-teacher -> fasd train on the resulting packs."""
    import json

    from helpers import fasd

    config = tmp_path / "fasd.toml"
    for kind, root in (("oulu", oulu_root), ("replay", replay_root)):
        result = fasd("ingest", kind, "--root", root, "--out", tmp_path / f"{kind}.h5", "--size", 32,
                      "--register", kind, "--config", config)
        assert result.exit_code == 0, result.output
        assert f"registered '{kind}'" in result.output
    store = tmp_path / "teacher.zarr"
    for kind in ("oulu", "replay"):
        result = fasd("cache-teacher", "--dataset", kind, "--config", config, "--store", store,
                      "--checkpoint", tiny_flip_checkpoint, "--batch-size", 16)
        assert result.exit_code == 0 and "dataset complete" in result.output, result.output
    run_dir = tmp_path / "run"
    result = fasd("train", "--split", "replay-to-oulu", "--config", config, "--store", store, "--epochs", 1,
                  "--max-draws", 8, "--batch-size", 4, "--workers", 0, "--out", run_dir)
    assert result.exit_code == 0, result.output
    metrics = json.loads((run_dir / "metrics.json").read_text())
    oulu_test = HDF5FrameSource(tmp_path / "oulu.h5").table.rows_in_splits(["test"])
    assert metrics["target"] == "oulu" and metrics["n"] == len(oulu_test) > 0
