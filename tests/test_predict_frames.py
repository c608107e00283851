"""`fasd predict` on full camera frames: EXIF, detection, the model's recorded crop policy, no-face, videos."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

import faces_fixtures as ff
from fasd.cli import app
from fasd.constants import STUDENT_INPUT_SIZE
from fasd.data.hdf5_pack import HDF5FrameSource
from fasd.data.image_io import decode_image
from fasd.data.ingest import run_ingest
from fasd.errors import FasdError
from fasd.export.export import export_model
from fasd.export.predict import decision_threshold, predict_paths
from fasd.export.runtimes import OnnxStudent
from fasd.faces.detectors import find_face, load_detector
from fasd.faces.policy import CropPolicy, policy_from_json
from fasd.student_train.checkpoint import save_checkpoint
from fasd.student_train.model import Student
from fasd.training.transforms import eval_transform

pytest.importorskip("av")
pytestmark = pytest.mark.usefixtures("one_torch_thread")
THRESHOLD = 0.37
POLICY = CropPolicy()  # what `fasd ingest faces` writes by default


def fasd(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _varied_student() -> Student:
    """Random weights with BatchNorm statistics from random images, so P(live) varies with the input."""
    torch.manual_seed(0)
    student = Student()
    for module in student.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None
    student.train()
    with torch.no_grad():
        student(torch.randn(16, 3, STUDENT_INPUT_SIZE, STUDENT_INPUT_SIZE))
    return student.eval()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A checkpoint trained (here: saved) on detector crops, its ONNX export, and one without a policy."""
    root = tmp_path_factory.mktemp("models")
    student = _varied_student()
    save_checkpoint(root / "faces.pt", student, epoch=0, config={}, val_threshold=THRESHOLD, crop_policy=POLICY)
    save_checkpoint(root / "crops.pt", student, epoch=0, config={}, val_threshold=THRESHOLD)
    export_model(root / "faces.pt", root / "faces.onnx")
    return root


@pytest.fixture(scope="module")
def faces_root(tmp_path_factory):
    return ff.build_faces_root(tmp_path_factory.mktemp("faces"))


def test_exported_metadata_carries_the_crop_policy(models):
    props = {prop.key: prop.value for prop in onnx.load(str(models / "faces.onnx")).metadata_props}
    assert policy_from_json(props["crop_policy"]) == POLICY
    assert OnnxStudent(models / "faces.onnx").metadata["crop_policy"] == POLICY.to_json()
    assert decision_threshold(OnnxStudent(models / "faces.onnx").metadata) == pytest.approx(THRESHOLD)
    crops_only = export_model(models / "crops.pt", models / "crops.onnx")
    assert "crop_policy" not in OnnxStudent(crops_only.path).metadata


def test_predict_crop_equals_the_ingest_crop_of_the_same_rotated_photo(models, faces_root, tmp_path):
    """Acceptance: the phone photo stored rotated (EXIF 6) -> the face is found upright; the crop predict scores
    (--save-crops) is the crop `ingest faces` stored for the same photo; p_live is the model's on that crop."""
    photo = faces_root / "train" / "live" / "astronaut.jpg"
    crops = tmp_path / "crops"
    result = fasd("predict", models / "faces.onnx", photo, "--json", "--save-crops", crops)
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout[result.stdout.index("["):])
    saved = np.asarray(Image.open(crops / "astronaut.png").convert("RGB"))
    run_ingest("faces", faces_root, tmp_path / "mine.h5", progress=False)
    pack = HDF5FrameSource(tmp_path / "mine.h5")
    ingested = pack.read_image(list(pack.table.frame_id).index("train/live/astronaut.jpg"))
    assert np.abs(saved.astype(int) - ingested).mean() <= 1.0
    upright = decode_image(photo, upright=True)
    face = find_face(upright, load_detector("haar"), POLICY).face
    assert row["face"] == pytest.approx(list(face.box), abs=0.01) and row["faces"] == 1
    expected = OnnxStudent(models / "faces.onnx").p_live(eval_transform()(ingested)[None].numpy())[0]
    assert row["p_live"] == pytest.approx(float(expected), abs=1e-5)
    assert row["decision"] == ("live" if row["p_live"] >= THRESHOLD else "spoof")
    assert row["threshold"] == pytest.approx(THRESHOLD)


def test_predict_uses_the_models_own_policy(faces_root, tmp_path):
    """A student trained on 2x boxes at 64 px is fed 2x boxes at 64 px, not fasd's defaults."""
    policy = CropPolicy(scale=2.0, size=64)
    save_checkpoint(tmp_path / "wide.pt", _varied_student(), epoch=0, config={}, crop_policy=policy)
    photo = faces_root / "train" / "spoof" / "print" / "upright.png"
    [row] = predict_paths(tmp_path / "wide.pt", [photo], save_crops=tmp_path / "crops")
    saved = np.asarray(Image.open(tmp_path / "crops" / "upright.png").convert("RGB"))
    np.testing.assert_array_equal(saved, find_face(ff.astronaut(), load_detector("haar"), policy).crop)
    assert row["threshold"] == 0.5  # no validation threshold stored


def test_a_mixed_folder_no_face_video_and_unreadable(models, faces_root, capsys):
    rows = {row["path"].split("/")[-1]: row for row in predict_paths(models / "faces.onnx", [faces_root],
                                                                     frames_per_video=5)}
    assert set(rows) == {"astronaut.jpg", "upright.png", "smaller.png", "clip.avi", "cat.jpg"}
    assert {k: rows["cat.jpg"][k] for k in ("face", "p_live", "decision", "faces")} == {
        "face": None, "p_live": None, "decision": "no-face", "faces": 0}
    video = rows["clip.avi"]
    assert [f["decision"] for f in video["frames"]][3:] == ["no-face", "no-face"] and video["face_frames"] == 3
    assert video["p_live"] == pytest.approx(np.mean([f["p_live"] for f in video["frames"][:3]]))
    assert video["decision"] == ("live" if video["p_live"] >= THRESHOLD else "spoof")
    err = capsys.readouterr().err
    assert "broken.jpg" in err and len([line for line in err.splitlines() if "broken.jpg" in line]) == 1


def test_video_without_a_face_and_cli_one_line_errors(models, tmp_path):
    blank = np.full((64, 64, 3), 128, np.uint8)
    ff.fx.write_video(tmp_path / "empty.avi", [blank] * 3)
    result = fasd("predict", models / "faces.onnx", tmp_path / "empty.avi", "--json")
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout[result.stdout.index("["):])
    assert (row["p_live"], row["decision"], row["face"], row["face_frames"]) == (None, "no-face", None, 0)
    assert "no face in any of its 3 sampled frames" in result.stderr
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG nope")
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "mine.png").write_bytes(b"keep")
    bad_weights = tmp_path / "w.onnx"
    bad_weights.write_bytes(b"nope")
    cases = [((broken,), "none of the inputs could be read"),
             ((broken, "--save-crops", tmp_path / "used"), "is not an empty folder"),
             ((broken, "--detector", "yunet", "--detector-weights", bad_weights), "is not a YuNet ONNX model"),
             ((broken, "--no-detect", "--detector", "haar"), "--no-detect scores the inputs as crops")]
    for args, message in cases:
        result = fasd("predict", models / "faces.onnx", *args)
        assert result.exit_code != 0 and message in result.output, result.output
        assert "Traceback" not in result.output
    assert (tmp_path / "used" / "mine.png").read_bytes() == b"keep"
    save_checkpoint(tmp_path / "yunet.pt", _varied_student(), epoch=0, config={},
                    crop_policy=CropPolicy(detector="yunet", align_eyes=True))
    result = fasd("predict", tmp_path / "yunet.pt", broken)
    assert result.exit_code != 0 and "trained on crops from the yunet detector: pass --detector-weights" in \
        result.output


def test_no_detect_and_models_without_a_policy_score_inputs_as_crops(models, faces_root):
    photo = faces_root / "train" / "spoof" / "print" / "upright.png"
    expected = OnnxStudent(models / "faces.onnx").p_live(eval_transform()(ff.astronaut())[None].numpy())[0]
    for model, options in ((models / "faces.onnx", {"no_detect": True}), (models / "crops.pt", {})):
        [row] = predict_paths(model, [photo], **options)
        assert "face" not in row and row["p_live"] == pytest.approx(float(expected), abs=1e-4)
    [detected] = predict_paths(models / "crops.pt", [photo], detector="haar")  # opt in: default policy
    assert detected["face"] is not None and detected["p_live"] != pytest.approx(float(expected), abs=1e-4)
    with pytest.raises(FasdError, match="writes the face crops detection makes"):
        predict_paths(models / "crops.pt", [photo], save_crops=faces_root / "never")


@pytest.mark.slow
def test_train_on_ingested_faces_records_the_policy_through_export(faces_root, tmp_path):
    """ingest faces -> train (the checkpoint takes the packs' policy) -> export (metadata) -> predict detects."""
    from fasd.data.synth import synthesize

    config = synthesize(tmp_path / "data", domains=1, frames=36, size=64, seed=0, progress=False)
    policy = CropPolicy(scale=1.6, size=96)
    assert fasd("ingest", "faces", "--root", faces_root, "--out", tmp_path / "mine.h5", "--crop-scale", 1.6,
                "--size", 96, "--register", "mine", "--config", config).exit_code == 0
    result = fasd("train", "--split", "mine-to-alpha", "--config", config, "--no-teacher", "--epochs", "1",
                  "--max-draws", "8", "--batch-size", "4", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert policy_from_json(torch.load(tmp_path / "run" / "best.pt", weights_only=True)["crop_policy"]) == policy
    assert fasd("export", tmp_path / "run" / "best.pt", "--out", tmp_path / "m.onnx").exit_code == 0
    assert policy_from_json(OnnxStudent(tmp_path / "m.onnx").metadata["crop_policy"]) == policy
    [row] = predict_paths(tmp_path / "m.onnx", [faces_root / "train" / "spoof" / "print" / "upright.png"],
                          save_crops=tmp_path / "crops")
    assert row["face"] is not None
    saved = np.asarray(Image.open(tmp_path / "crops" / "upright.png").convert("RGB"))
    np.testing.assert_array_equal(saved, find_face(ff.astronaut(), load_detector("haar"), policy).crop)
