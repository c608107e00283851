"""Operating points: BPCER at a fixed APCER (ISO/IEC 30107-3's BPCER20/BPCER100) against a brute force over every
candidate threshold, and the threshold fixed on the sources' validation split travelling train -> export ->
predict."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from fasd.errors import FasdError
from fasd.evaluate.metrics import (bpcer_at_apcer, compute_metrics, operating_threshold, parse_operating_point,
                                   threshold_at_apcer, threshold_at_bpcer)

# Hand example: live 0.9, 0.8, 0.4; print attacks 0.5, 0.3; replay attacks 0.2, 0.1 (accept score >= t).
HAND_LABELS = [1, 1, 1, 0, 0, 0, 0]
HAND_SCORES = [0.9, 0.8, 0.4, 0.5, 0.3, 0.2, 0.1]
HAND_TYPES = ["", "", "", "print", "print", "replay", "replay"]


def test_hand_example():
    # APCER <= 25 % lets 1 of the 4 attacks through: t = 0.4 accepts the 0.5 print and every live frame (BPCER 0);
    # t = 0.3 would accept 2 attacks, t = 0.5 would reject the 0.4 live frame.
    assert threshold_at_apcer(HAND_LABELS, HAND_SCORES, 0.25) == 0.4
    # BPCER <= 1/3 lets the 0.4 live frame go: t = 0.8 accepts no attack, and is the lowest such t.
    assert threshold_at_bpcer(HAND_LABELS, HAND_SCORES, 0.34) == 0.8
    row = bpcer_at_apcer(HAND_LABELS, HAND_SCORES, 0.5, HAND_TYPES)
    # APCER <= 50 %: pooled t = 0.3 (2 attacks accepted, BPCER 0); per type, 1 of 2 prints may pass: t = 0.4
    # (BPCER 0); 1 of 2 replays: t = 0.2 (BPCER 0). Worst: 0.
    assert row == {"apcer_target": 0.5, "threshold": 0.4, "apcer": 0.25, "bpcer": 0.0,
                   "bpcer_per_type": {"print": 0.0, "replay": 0.0}, "bpcer_worst_type": 0.0}
    row = bpcer_at_apcer(HAND_LABELS, HAND_SCORES, 0.25, HAND_TYPES)  # 2 frames per type cannot measure 25 %
    assert row["bpcer"] == 0.0 and row["bpcer_per_type"] == {"print": None, "replay": None}
    assert row["bpcer_worst_type"] is None
    assert threshold_at_apcer(HAND_LABELS, HAND_SCORES, 0.2) is None  # 4 attacks: APCER steps of 25 %


def test_ties_at_the_top_cannot_reach_the_target():
    # Two of the three attacks tie with a live frame at the top score 0.9: every threshold accepting anything
    # accepts both (APCER >= 2/3), so APCER <= 34 % (1 of 3) is out of reach; 67 % lets t go down to 0.5.
    labels, scores = [1, 0, 0, 0, 1], [0.9, 0.9, 0.9, 0.1, 0.5]
    assert threshold_at_apcer(labels, scores, 0.34) is None
    assert threshold_at_apcer(labels, scores, 0.67) == 0.5
    with pytest.raises(FasdError, match="extreme scores are tied"):
        operating_threshold(parse_operating_point("apcer=0.34"), labels, scores, "v")


def _brute(labels: list[int], scores: list[float], target: str, limited: int) -> float | None:
    """Every distinct score as a threshold; the limited class's error <= target; the other's error lowest; ties:
    apcer -> the highest t, bpcer -> the lowest. None: no frames of the other class, or too few of the limited
    class to measure the target (n x target < 1), or no threshold meets it."""
    bound = Fraction(target)
    n_limited = sum(label == limited for label in labels)
    n_other = len(labels) - n_limited
    if n_other == 0 or n_limited * bound < 1:
        return None
    found = []
    for t in sorted(set(scores)):
        spoof_accepted = sum(label == 0 and s >= t for label, s in zip(labels, scores))
        live_rejected = sum(label == 1 and s < t for label, s in zip(labels, scores))
        limited_error, other_error = ((spoof_accepted, live_rejected) if limited == 0
                                      else (live_rejected, spoof_accepted))
        if Fraction(limited_error, n_limited) <= bound:
            found.append((other_error, -t if limited == 0 else t))
    if not found:
        return None
    other_error, key = min(found)
    return -key if limited == 0 else key


frames = st.lists(st.tuples(st.integers(0, 1), st.integers(0, 12), st.sampled_from(["print", "replay", "mask"])),
                  min_size=1, max_size=40)
targets = st.sampled_from(["0.01", "0.05", "0.1", "0.2", "0.25", "0.3", "0.5", "0.75"])


@given(frames, targets)
@example([(0, 5, "print")] * 20 + [(1, 7, "print")], "0.05")  # 20 attacks just measure 5 %
def test_thresholds_equal_brute_force(drawn, target):
    labels = [label for label, _, _ in drawn]
    scores = [value / 12 for _, value, _ in drawn]
    assert threshold_at_apcer(labels, scores, float(target)) == _brute(labels, scores, target, 0)
    assert threshold_at_bpcer(labels, scores, float(target)) == _brute(labels, scores, target, 1)


@given(frames, targets)
def test_bpcer_per_type_and_worst_equal_brute_force(drawn, target):
    labels = np.array([label for label, _, _ in drawn])
    scores = np.array([value / 12 for _, value, _ in drawn])
    types = np.array([kind if label == 0 else "" for label, _, kind in drawn])
    row = bpcer_at_apcer(labels, scores, float(target), types)
    live = labels == 1

    def bpcer_at(t):
        return None if t is None else float((scores[live] < t).mean())
    assert row["threshold"] == _brute(labels.tolist(), scores.tolist(), target, 0)
    assert row["bpcer"] == bpcer_at(row["threshold"])
    if "bpcer_per_type" not in row:
        assert not (labels == 0).any()
        return
    for kind, value in row["bpcer_per_type"].items():
        keep = live | (types == kind)
        assert value == bpcer_at(_brute(labels[keep].tolist(), scores[keep].tolist(), target, 0))
    if row["bpcer_worst_type"] is not None:
        # Worst attack type = the lowest BPCER over thresholds where every type's APCER meets the target.
        bound = Fraction(target)
        joint = [float((scores[live] < t).mean()) for t in sorted(set(scores.tolist()))
                 if all(Fraction(int((scores[types == kind] >= t).sum()), int((types == kind).sum())) <= bound
                        for kind in row["bpcer_per_type"])]
        assert row["bpcer_worst_type"] == min(joint)


def test_compute_metrics_reports_bpcer20_and_bpcer100():
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(300), np.zeros(300)].astype(int)
    scores = np.r_[rng.uniform(0.3, 1.0, 300), rng.uniform(0.0, 0.7, 300)]
    metrics = compute_metrics(labels, scores)
    for name, target in (("bpcer20", 0.05), ("bpcer100", 0.01)):
        row = metrics["bpcer_at_apcer"][name]
        assert row == bpcer_at_apcer(labels, scores, target)
        assert row["apcer"] <= target and row["bpcer"] is not None
    assert metrics["bpcer_at_apcer"]["bpcer100"]["bpcer"] >= metrics["bpcer_at_apcer"]["bpcer20"]["bpcer"]


@pytest.mark.parametrize("text", ["apcer", "apcer=0", "apcer=1.5", "apcer=x", "eer=0.1", "far=0.1", ""])
def test_bad_operating_point_is_one_line(text):
    with pytest.raises(FasdError, match="--operating-point") as error:
        parse_operating_point(text)
    assert "\n" not in str(error.value)


def test_unreachable_operating_point_names_what_is_reachable():
    labels, scores = [1] * 30 + [0] * 20, np.linspace(0, 1, 50)
    assert operating_threshold(parse_operating_point("apcer=0.05"), labels, scores, "v") == threshold_at_apcer(
        labels, scores, 0.05)
    with pytest.raises(FasdError, match=r"20 spoof frames, 100 are needed .* smallest non-zero APCER is 5.00 %"):
        operating_threshold(parse_operating_point("apcer=0.01"), labels, scores, "the validation split")
    with pytest.raises(FasdError, match="no spoof frames"):
        operating_threshold(parse_operating_point("bpcer=0.5"), [1, 1], [0.2, 0.3], "v")


# --- train -> export -> predict on the tiny synthetic domains (validation split: alpha + beta, 16 spoof, 8 live)

def fasd(*args):
    from typer.testing import CliRunner

    from fasd.cli import app
    return CliRunner().invoke(app, [str(a) for a in args])


# 18 steps of 4 frames at a high learning rate: a randomly initialised student that scores frames apart (scores
# are P(live) of logit margins rounded to 1e-4, fasd.evaluate.scoring.live_score).
TINY = ["--split", "holdout-gamma", "--no-teacher", "--epochs", "1", "--max-draws", "72", "--batch-size", "4",
        "--lr", "0.01"]


def _validation_scores(run_dir, config, tmp_path) -> tuple[list[int], list[float]]:
    """The best checkpoint's validation scores, recomputed by `fasd evaluate` (not read from the checkpoint)."""
    import csv

    labels, scores = [], []
    for name in ("alpha", "beta"):
        path = tmp_path / f"{name}.csv"
        result = fasd("evaluate", run_dir / "best.pt", "--dataset", name, "--split", "val", "--config", config,
                      "--scores", path)
        assert result.exit_code == 0, result.output
        with open(path) as handle:
            rows = list(csv.DictReader(handle))
        labels += [int(r["label"]) for r in rows]
        scores += [float(r["score"]) for r in rows]
    return labels, scores


@pytest.fixture(scope="module")
def apcer_run(tmp_path_factory, synth_config):
    run_dir = tmp_path_factory.mktemp("op") / "run"
    result = fasd("train", "--config", synth_config, *TINY, "--operating-point", "apcer=0.25", "--out", run_dir)
    assert result.exit_code == 0, result.output
    return run_dir


def test_train_export_predict_carry_the_operating_point(apcer_run, synth_config, tmp_path):
    import json

    import torch
    from PIL import Image

    from fasd.export.runtimes import load_scorer

    checkpoint = torch.load(apcer_run / "best.pt", weights_only=True)
    assert checkpoint["operating_point"] == "apcer=0.25"
    # The validation scores best.pt keeps are the validation split's, as `fasd evaluate` scores them ...
    labels, recomputed = _validation_scores(apcer_run, synth_config, tmp_path)
    assert checkpoint["val_labels"].tolist() == labels
    np.testing.assert_allclose(checkpoint["val_scores"].numpy(), recomputed, atol=1e-6)
    scores = checkpoint["val_scores"].tolist()
    assert len(set(scores)) > 10  # scored apart
    # ... and with 16 validation attacks, APCER <= 25 % lets 4 through: the brute force over every threshold
    # picks the checkpoint's threshold.
    assert checkpoint["val_threshold"] == _brute(labels, scores, "0.25", 0)

    kept = tmp_path / "kept.onnx"
    assert fasd("export", apcer_run / "best.pt", "--out", kept).exit_code == 0
    assert load_scorer(kept).metadata["val_threshold"] == pytest.approx(checkpoint["val_threshold"])
    assert load_scorer(kept).metadata["operating_point"] == "apcer=0.25"

    moved = tmp_path / "moved.onnx"
    result = fasd("export", apcer_run / "best.pt", "--out", moved, "--operating-point", "bpcer=0.25")
    assert result.exit_code == 0, result.output
    assert "operating point bpcer=0.25" in result.output
    meta = load_scorer(moved).metadata
    assert meta["operating_point"] == "bpcer=0.25"
    assert meta["val_threshold"] == pytest.approx(_brute(labels, scores, "0.25", 1))

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(images / f"{i}.png")
    for model, threshold in ((moved, meta["val_threshold"]), (apcer_run / "best.pt", checkpoint["val_threshold"])):
        result = fasd("predict", model, images, "--json", "--no-detect")  # the images stand for face crops
        assert result.exit_code == 0, result.output
        rows = json.loads(result.stdout[result.stdout.index("["):])
        assert len(rows) == 4
        for row in rows:
            assert row["threshold"] == pytest.approx(threshold)
            assert row["decision"] == ("live" if row["p_live"] >= threshold else "spoof")


def test_unreachable_operating_point_is_refused_before_training(synth_config, tmp_path):
    run_dir = tmp_path / "run"
    result = fasd("train", "--config", synth_config, *TINY, "--operating-point", "apcer=0.05", "--out", run_dir)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert "16 spoof frames, 20 are needed to measure APCER <= 5 %" in result.output
    assert not (run_dir / "best.pt").exists()
    assert "--operating-point" in fasd("train", "--config", synth_config, *TINY, "--operating-point", "far=1",
                                       "--out", run_dir).output


def test_export_of_a_checkpoint_without_validation_scores(apcer_run, tmp_path):
    import torch

    payload = torch.load(apcer_run / "best.pt", weights_only=True)
    for key in ("val_scores", "val_labels", "operating_point"):
        del payload[key]
    old = tmp_path / "old.pt"
    torch.save(payload, old)
    result = fasd("export", old, "--out", tmp_path / "old.onnx", "--operating-point", "apcer=0.25")
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert "keeps no validation scores" in result.output and not (tmp_path / "old.onnx").exists()


def test_scores_that_cannot_reach_the_point_keep_the_eer_threshold_with_a_warning(synth_config, tmp_path):
    import torch

    # Two steps barely move a random student: every validation frame gets the same rounded score (tied), so no
    # threshold reaches APCER <= 25 %; the finished run is kept, at the validation EER, with one warning.
    run_dir = tmp_path / "run"
    result = fasd("train", "--config", synth_config, "--split", "holdout-gamma", "--no-teacher", "--epochs", "1",
                  "--max-draws", "8", "--batch-size", "4", "--operating-point", "apcer=0.25", "--out", run_dir)
    assert result.exit_code == 0, result.output
    checkpoint = torch.load(run_dir / "best.pt", weights_only=True)
    if len(set(checkpoint["val_scores"].tolist())) > 1:
        pytest.skip("this student scored the validation frames apart")
    warning = [line for line in result.output.splitlines() if "cannot be reached" in line]
    assert len(warning) == 1 and "decides at the validation EER instead" in warning[0]
    assert checkpoint["operating_point"] == "eer" and checkpoint["val_threshold"] == checkpoint["val_scores"][0]
