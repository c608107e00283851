"""ONNX export, parity, scorers, latency bench and prediction on a random-weight student."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image
from torch import nn

from fasd.constants import IMAGENET_MEAN, IMAGENET_STD, STUDENT_INPUT_SIZE
from fasd.errors import FasdError
from fasd.export import export as export_driver
from fasd.export.latency import bench_model, format_latency
from fasd.export.export import export_model
from fasd.export.metadata import decode_metadata, encode_metadata, student_metadata
from fasd.export.runtimes import OnnxStudent, TorchStudentScorer, load_scorer
from fasd.export.predict import format_predictions, predict_paths
from fasd.student_train.checkpoint import save_checkpoint
from fasd.student_train.model import Student
from fasd.training.transforms import eval_transform

EER = 0.42


def _calibrated_student(seed: int = 0) -> Student:
    """Random weights with BatchNorm statistics set from random images: a fresh Student's activations
    vanish through the encoder (eval-mode BN with unit variance), making every P(live) equal."""
    torch.manual_seed(seed)
    student = Student()
    for module in student.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average: one pass sets the batch statistics
    student.train()
    with torch.no_grad():
        student(torch.randn(32, 3, STUDENT_INPUT_SIZE, STUDENT_INPUT_SIZE))
    return student.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    checkpoint = root / "student.pt"
    save_checkpoint(checkpoint, _calibrated_student(), epoch=0, config={"seed": 0}, val_threshold=EER)
    report = export_model(checkpoint, root / "out" / "student.onnx")
    return checkpoint, report


@pytest.fixture(scope="module")
def images_dir(tmp_path_factory):
    """3 PNGs of different sizes (one in a subfolder) and a text file that must be ignored."""
    root = tmp_path_factory.mktemp("images")
    (root / "sub").mkdir()
    rng = np.random.default_rng(1)
    for name, (h, w) in {"b.png": (96, 80), "a.png": (112, 112), "sub/c.png": (150, 130)}.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / name)
    (root / "notes.txt").write_text("not an image")
    return root


def _random_images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, STUDENT_INPUT_SIZE, STUDENT_INPUT_SIZE),
                                                       dtype=np.float32)


def test_export_report_and_file(exported):
    _, report = exported
    assert report.path.is_file()
    assert report.bytes == report.path.stat().st_size <= 4.2e6
    assert 0.9e6 <= report.parameters <= 1.1e6
    assert "opset 17" in report.note and report.val_threshold == pytest.approx(EER)
    assert 0.0 <= report.parity.max_p_live_diff < 1e-4 and 0.0 <= report.parity.max_logit_diff <= 1e-3
    assert [p.name for p in report.path.parent.iterdir()] == ["student.onnx"]  # no temp file left
    model = onnx.load(str(report.path))
    assert all(not init.external_data for init in model.graph.initializer)  # self-contained
    assert model.opset_import[0].version == 17
    text = report.describe()
    assert "1.0" in text.split("M parameters")[0] and "MB" in text and "parity" in text


@pytest.mark.parametrize("batch", [1, 5])
def test_parity_torch_vs_onnx(exported, batch):
    checkpoint, report = exported
    images = _random_images(batch, seed=batch)
    p_onnx = OnnxStudent(report.path).p_live(images)
    p_torch = TorchStudentScorer(checkpoint).p_live(images)
    assert p_onnx.shape == p_torch.shape == (batch,)
    assert np.abs(p_onnx - p_torch).max() < 1e-4
    assert np.all((p_onnx >= 0) & (p_onnx <= 1))


def test_scores_depend_on_input(exported):
    """Guards the parity tests against a degenerate model that gives every image the same score."""
    p = OnnxStudent(exported[1].path).p_live(_random_images(8))
    assert p.std() > 1e-3


@pytest.mark.parametrize("batch", [3, 7])
def test_dynamic_batch(exported, batch):
    session = ort.InferenceSession(str(exported[1].path), providers=["CPUExecutionProvider"])
    logits, p_live = session.run(["logits", "p_live"], {"image": _random_images(batch)})
    assert logits.shape == (batch, 2) and p_live.shape == (batch,)
    np.testing.assert_allclose(p_live, torch.softmax(torch.from_numpy(logits), 1)[:, 1].numpy(), atol=1e-6)


def test_metadata_round_trip(exported):
    checkpoint, report = exported
    meta = OnnxStudent(report.path).metadata
    assert meta["val_threshold"] == pytest.approx(EER)
    assert meta["input_size"] == STUDENT_INPUT_SIZE and meta["input_name"] == "image"
    assert meta["mean"] == pytest.approx(IMAGENET_MEAN) and meta["std"] == pytest.approx(IMAGENET_STD)
    assert meta["labels"] == "0 = spoof, 1 = live"
    assert meta == TorchStudentScorer(checkpoint).metadata
    raw = {p.key: p.value for p in onnx.load(str(report.path)).metadata_props}
    assert float(raw["val_threshold"]) == pytest.approx(EER) and "eer_threshold" not in raw
    assert raw["labels"] == "0 = spoof, 1 = live"
    without = student_metadata(None)
    assert "val_threshold" not in without
    assert decode_metadata(encode_metadata(without), FasdError) == without


def test_load_scorer_picks_by_suffix_and_content(exported, tmp_path):
    checkpoint, report = exported
    assert isinstance(load_scorer(report.path), OnnxStudent)
    assert isinstance(load_scorer(checkpoint), TorchStudentScorer)
    renamed = tmp_path / "model.bin"
    renamed.write_bytes(report.path.read_bytes())
    assert isinstance(load_scorer(renamed), OnnxStudent)


def test_export_rejects_bad_arguments(exported, tmp_path):
    checkpoint, _ = exported
    with pytest.raises(FasdError, match="opset"):
        export_model(checkpoint, tmp_path / "a.onnx", opset=99)
    with pytest.raises(FasdError, match="directory"):
        export_model(checkpoint, tmp_path)
    text = tmp_path / "ckpt.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(FasdError, match="not a readable fasd student checkpoint"):
        export_model(text, tmp_path / "a.onnx")
    assert not (tmp_path / "a.onnx").exists()


def test_failed_parity_writes_nothing(exported, tmp_path, monkeypatch):
    checkpoint, report = exported
    out = tmp_path / "student.onnx"
    out.write_bytes(report.path.read_bytes())  # a previous export, which --overwrite may replace
    monkeypatch.setattr(export_driver, "PARITY_TOLERANCE", -1.0)
    with pytest.raises(FasdError, match="disagrees with PyTorch"):
        export_model(checkpoint, out, overwrite=True)
    assert out.read_bytes() == report.path.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student.onnx"]


def _bad_files(root):
    rng = np.random.default_rng(2)
    files = {"random.onnx": rng.bytes(4096), "text.onnx": b"hello\n", "random.pt": rng.bytes(4096),
             "notes": b"just text\n"}
    for name, data in files.items():
        (root / name).write_bytes(data)
    return [root / name for name in files]


@pytest.mark.parametrize("call", ["OnnxStudent", "load_scorer", "bench_model", "predict_paths"])
def test_bad_model_files_are_fasd_errors(call, tmp_path, images_dir):
    calls = {"OnnxStudent": OnnxStudent, "load_scorer": load_scorer,
             "bench_model": lambda p: bench_model(p, runs=2, warmup=0, progress=False),
             "predict_paths": lambda p: predict_paths(p, [images_dir], None)}
    for path in _bad_files(tmp_path):
        with pytest.raises(FasdError) as info:
            calls[call](path)
        assert path.name in str(info.value) and "\n" not in str(info.value)


def test_onnx_with_wrong_io_or_no_metadata(exported, tmp_path):
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])])
    other = tmp_path / "other.onnx"
    onnx.save(onnx.helper.make_model(graph, ir_version=9, opset_imports=[onnx.helper.make_opsetid("", 17)]), str(other))
    with pytest.raises(FasdError, match="is not a fasd student ONNX model: expected input image"):
        OnnxStudent(other)
    stripped = onnx.load(str(exported[1].path))
    del stripped.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(stripped, str(bare))
    with pytest.raises(FasdError, match="metadata lacks input_size"):
        load_scorer(bare)
    with pytest.raises(FasdError, match="not found"):
        load_scorer(tmp_path / "missing.onnx")


def test_bench_numbers_are_sane(exported):
    result = bench_model(exported[1].path, runs=20, warmup=5, batch=2, threads=1, progress=False)
    assert 0 < result["median_ms"] <= result["p95_ms"] <= result["p99_ms"]
    assert result["mean_ms"] > 0
    assert result["throughput"] == pytest.approx(2 * 1000 / result["mean_ms"])
    assert (result["runs"], result["warmup"], result["batch"], result["threads"]) == (20, 5, 2, 1)
    assert result["cpu"]
    assert "median" in format_latency(result) and "images/s" in format_latency(result)
    with pytest.raises(FasdError, match="--runs"):
        bench_model(exported[1].path, runs=0)
    with pytest.raises(FasdError, match="threads"):
        bench_model(exported[1].path, runs=1, threads=0)


def test_predict_folder_matches_onnx_student(exported, images_dir):
    checkpoint, report = exported
    rows = predict_paths(report.path, [images_dir, images_dir / "a.png"], None)  # a.png once
    expected_paths = [images_dir / "a.png", images_dir / "b.png", images_dir / "sub" / "c.png"]
    assert [row["path"] for row in rows] == list(map(str, expected_paths))
    transform = eval_transform()
    tensors = torch.stack([transform(np.array(Image.open(p).convert("RGB"))) for p in expected_paths]).numpy()
    expected = OnnxStudent(report.path).p_live(tensors)
    p_live = np.array([row["p_live"] for row in rows])
    assert np.all((p_live >= 0) & (p_live <= 1))
    np.testing.assert_allclose(p_live, expected, atol=1e-6)
    assert all(row["threshold"] == pytest.approx(EER) for row in rows)  # from the metadata
    assert [row["decision"] for row in rows] == ["live" if p >= EER else "spoof" for p in p_live]
    torch_rows = predict_paths(checkpoint, [images_dir / "a.png"], None)
    assert abs(torch_rows[0]["p_live"] - rows[0]["p_live"]) < 1e-4
    table = format_predictions(rows)
    assert all(row["path"] in table for row in rows) and "live when P(live) >= 0.4200" in table


def test_predict_decision_flips_at_threshold(exported, images_dir):
    model = exported[1].path
    p = predict_paths(model, [images_dir / "b.png"], None)[0]["p_live"]
    at = predict_paths(model, [images_dir / "b.png"], p)[0]
    above = predict_paths(model, [images_dir / "b.png"], min(p + 1e-4, 1.0))[0]
    assert (at["decision"], at["threshold"]) == ("live", p)
    assert above["decision"] == "spoof"
    with pytest.raises(FasdError, match="threshold"):
        predict_paths(model, [images_dir], 1.5)


def test_predict_default_threshold_without_eer(tmp_path, images_dir):
    checkpoint = tmp_path / "no_eer.pt"
    save_checkpoint(checkpoint, Student(), epoch=0, config={})
    rows = predict_paths(checkpoint, [images_dir / "a.png"], None)
    assert rows[0]["threshold"] == 0.5


def test_files_with_the_old_threshold_name_still_work(exported, tmp_path, images_dir):
    """Checkpoints and exported models written before the rename hold the validation threshold as eer_threshold:
    predict, export and the scorers' metadata still read it (fasd.evaluate.metrics.stored_val_threshold)."""
    checkpoint, report = exported
    payload = torch.load(checkpoint, weights_only=True)
    payload["eer_threshold"] = payload.pop("val_threshold")
    old_checkpoint = tmp_path / "old.pt"
    torch.save(payload, old_checkpoint)
    model = onnx.load(str(report.path))
    for prop in model.metadata_props:
        if prop.key == "val_threshold":
            prop.key = "eer_threshold"
    old_onnx = tmp_path / "old.onnx"
    onnx.save(model, str(old_onnx))
    assert "val_threshold" not in OnnxStudent(old_onnx).metadata
    for old in (old_checkpoint, old_onnx):
        assert predict_paths(old, [images_dir / "a.png"], None)[0]["threshold"] == pytest.approx(EER)
    reexported = export_model(old_checkpoint, tmp_path / "again.onnx")
    assert reexported.val_threshold == pytest.approx(EER)
    assert OnnxStudent(reexported.path).metadata["val_threshold"] == pytest.approx(EER)


def test_predict_bad_inputs(exported, tmp_path):
    model = exported[1].path
    (tmp_path / "empty").mkdir()
    with pytest.raises(FasdError, match="no images"):
        predict_paths(model, [tmp_path / "empty"], None)
    with pytest.raises(FasdError, match="not found"):
        predict_paths(model, [tmp_path / "missing.png"], None)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    with pytest.raises(FasdError, match="broken.png"):
        predict_paths(model, [broken], None)
