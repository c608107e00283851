"""The exports that have to be fast: the .ort laid out for its CPU (--ort-platform) and the int8 decision gate.

Timings are benchmarks (docs/benchmarks.md, bench/int8_profile.py), never tested here; what is tested is what
makes them fast or safe: the NCHWc layout is in an amd64 .ort and not in the portable one, and an int8 file is
refused (or written with --force and a warning) when it cannot be shown to make fp32's decisions.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fasd.errors import FasdError
from fasd.export import export as export_driver
from fasd.export.deployable import load_deployable
from fasd.export.export import DECIDED_SPREAD, DEFAULT_THRESHOLD, export_model
from fasd.export.frames import dataset_frames
from fasd.export.runtimes import load_scorer
from helpers import bn_calibrated_student

pytestmark = pytest.mark.usefixtures("one_torch_thread")
NCHWC = b"ReorderInput"  # the operator that enters ONNX Runtime's NCHWc layout (domain com.microsoft.nchwc)


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    """(checkpoint, fasd.toml): MobileNetV3-Small, random weights, BN statistics of real frames (its logits vary
    by ~1 across frames: some frames clearly decided, some near the threshold)."""
    return bn_calibrated_student(tmp_path_factory.mktemp("fast"), frames=120, size=64, seed=4, calibration=96)


@pytest.mark.slow
def test_ort_platform_bakes_the_nchwc_layout_only_for_amd64(student, tmp_path):
    checkpoint, config = student
    portable = export_model(checkpoint, tmp_path / "arm.ort", "ort", config=config)
    x86 = export_model(checkpoint, tmp_path / "x86.ort", "ort", config=config, ort_platform="amd64")
    assert NCHWC not in portable.path.read_bytes() and NCHWC in x86.path.read_bytes()
    assert "portable layout for arm" in portable.note and "NCHWc layout for x86" in x86.note
    assert x86.parity.max_logit_diff <= export_driver.PARITY_TOLERANCE
    frames = np.random.default_rng(0).standard_normal((4, 3, 112, 112), dtype=np.float32)
    np.testing.assert_allclose(load_scorer(x86.path).forward(frames)[0], load_scorer(portable.path).forward(frames)[0],
                               atol=1e-4)
    for kwargs, message in ((dict(fmt="onnx", ort_platform="amd64"), "--ort-platform is for --format ort"),
                            (dict(fmt="ort", ort_platform="riscv"), "--ort-platform riscv is not supported")):
        with pytest.raises(FasdError, match=message):
            export_model(checkpoint, tmp_path / f"bad{'.ort' if kwargs['fmt'] == 'ort' else '.onnx'}",
                         config=config, **kwargs)


@pytest.mark.slow
def test_int8_gate_counts_clearly_decided_frames_refuses_and_force_writes(student, tmp_path, monkeypatch, capsys):
    checkpoint, config = student
    out = tmp_path / "student-int8.onnx"
    monkeypatch.setattr(export_driver, "INT8_MIN_DECIDED", 10 ** 6)  # no parity set can pass
    with pytest.raises(FasdError, match=r"cannot be checked: fp32 decides only \d+ of the parity frames.*--force"):
        export_model(checkpoint, out, "onnx", quantize="int8", calibrate="alpha", calibration_frames=32,
                     config=config)
    assert list(tmp_path.iterdir()) == []
    report = export_model(checkpoint, out, "onnx", quantize="int8", calibrate="alpha", calibration_frames=32,
                          config=config, force=True)
    assert out.is_file() and "WRITING A SUSPECT int8 FILE (--force)" in capsys.readouterr().err
    # the report's figures, recomputed from the parity frames (alpha/test) and the two models
    frames, _ = dataset_frames("alpha", export_driver.PARITY_FRAMES, "test", config)
    with torch.inference_mode():
        fp32 = load_deployable(checkpoint).module(torch.from_numpy(frames))[0].double().numpy()
    int8 = load_scorer(out).forward(frames)[0].astype(np.float64)
    margin = fp32[:, 1] - fp32[:, 0]
    decided = np.abs(margin - np.log(DEFAULT_THRESHOLD / (1 - DEFAULT_THRESHOLD))) >= DECIDED_SPREAD * margin.std()
    same = (margin >= 0) == (int8[:, 1] - int8[:, 0] >= 0)
    assert 0 < decided.sum() < len(frames), "the fixture must have decided and undecided frames"
    assert report.parity.decided == decided.sum()
    assert report.parity.decided_agreement == pytest.approx(same[decided].mean(), abs=1.5 / decided.sum())
    assert report.parity.median_logit_diff == pytest.approx(np.median(np.abs(int8 - fp32)), rel=0.05)
    assert "int8 gate: same decision on" in report.describe()
    monkeypatch.setattr(export_driver, "INT8_MIN_DECIDED", 1)
    monkeypatch.setattr(export_driver, "INT8_MIN_AGREEMENT", 1.01)  # even a perfect file is refused
    with pytest.raises(FasdError, match=r"agrees with fp32 on only .* % of the \d+ parity frames fp32 decides"):
        export_model(checkpoint, tmp_path / "again.onnx", "onnx", quantize="int8", calibrate="alpha",
                     calibration_frames=32, config=config)
