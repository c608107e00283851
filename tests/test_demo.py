"""`fasd demo`: the multi-seed statistics and verdict on hand cases, and a shrunken demo end to end
(every stage for real at tiny sizes; a re-run reuses them and keeps the original stage times)."""

from __future__ import annotations

import json
import math
import statistics

import numpy as np
import pytest

from fasd.demo import DemoBudget, run_demo
from fasd.demo import pipeline
from fasd.demo.stats import aggregate, std_ratio, verdict
from fasd.errors import FasdError
from fasd.store_schema.reader import DatasetTargets

TINY = DemoBudget(domains=4, frames=72, size=64, teacher_epochs=1, teacher_draws=64, student_epochs=1,
                  max_draws=32, batch_size=16, seeds=2, bench_runs=20)


def test_aggregate_is_mean_and_sample_std_of_numeric_leaves():
    runs = [{"a": 1, "b": {"c": 2.0, "d": None}, "s": "x", "flag": True},
            {"a": 4, "b": {"c": 4.0, "d": 0.5}, "s": "y", "flag": False}]
    mean, std = aggregate(runs, ["a", "b", "s", "flag"])
    assert mean == {"a": 2.5, "b": {"c": 3.0, "d": None}}
    assert std["a"] == pytest.approx(math.sqrt(4.5)) and std["b"]["c"] == pytest.approx(math.sqrt(2.0))
    assert std["b"]["d"] is None
    one_mean, one_std = aggregate(runs[:1], ["a"])
    assert one_mean == {"a": 1} and one_std == {"a": None}


def test_verdict_clear_win_names_the_difference_and_the_spread():
    text = verdict([0.20, 0.22, 0.24], [0.30, 0.35, 0.40])
    assert "lowers the mean held-out ACER by 13.00 pp, more than the seed-to-seed spread (±5.00 pp)" in text
    assert "2.5x tighter" in text


def test_verdict_difference_inside_the_spread_is_called_that():
    text = verdict([0.28, 0.30, 0.32], [0.29, 0.31, 0.33])
    assert "-1.00 pp, inside the seed-to-seed spread (±2.00 pp)" in text
    assert "cannot tell the two students apart" in text and "lowers" not in text
    assert "about equal (1.0x)" in text


def test_verdict_distillation_that_hurts_says_so():
    text = verdict([0.40, 0.41, 0.42], [0.30, 0.31, 0.32])
    assert "raises the mean held-out ACER by 10.00 pp" in text


def test_verdict_wider_spread_and_degenerate_cases():
    assert "3.0x wider" in verdict([0.20, 0.26, 0.32], [0.30, 0.32, 0.34])
    assert "undefined" in verdict([0.3, 0.3, 0.3], [0.1, 0.3, 0.5])
    assert "no verdict" in verdict([0.2], [0.3])
    assert std_ratio(0.08, 0.01) == pytest.approx(8.0) and std_ratio(0.1, 0.0) is None


def test_teacher_lookup_refuses_frames_missing_from_the_store(monkeypatch, synth_config):
    """A test frame without cached logits must not silently read store row -1."""
    from fasd.config import load_registry
    from fasd.data.open_source import open_source

    registry = load_registry(synth_config)
    table = open_source(registry.dataset("gamma")).table
    missing = table.frame_id[table.rows_in_splits(["test"])[0]]
    kept = np.array([f for f in table.frame_id if f != missing])
    cached = DatasetTargets("gamma", kept, {"logits": np.zeros((len(kept), 2), np.float32)},
                            {str(f): i for i, f in enumerate(kept)})
    monkeypatch.setattr(pipeline, "open_store", lambda path: None)
    monkeypatch.setattr(pipeline, "load_targets", lambda store, name, targets: cached)
    with pytest.raises(FasdError, match="lacks teacher logits for 1 of"):
        pipeline._teacher_on_target("store.zarr", registry, "gamma")


@pytest.mark.slow
def test_shrunken_demo_end_to_end(tmp_path):
    messages: list[str] = []
    out = tmp_path / "demo"
    summary = run_demo(out, TINY, progress=False, log=messages.append)
    for name in ("summary.json", "report.md", "acer.png", "roc.png", "student.onnx", "teacher.pt", "timings.json"):
        assert (out / name).is_file(), name
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert on_disk["teacher_saw"]["domains"] == ["alpha", "beta", "delta"]  # all but the target, gamma
    assert on_disk["protocol"] == "holdout-gamma" and on_disk["sources"] == ["alpha", "beta"]
    assert 0.0 <= on_disk["teacher"]["at_eer"]["acer"] <= 1.0  # one metrics object

    for key, no_teacher in (("distilled", False), ("no_teacher", True)):
        block = on_disk[key]
        runs = [json.loads((out / "runs" / key / f"seed{s}" / "metrics.json").read_text()) for s in (0, 1)]
        assert block["seeds"] == runs and [r["no_teacher"] for r in runs] == [no_teacher] * 2
        acers = [r["at_eer"]["acer"] for r in runs]
        assert block["mean"]["at_eer"]["acer"] == pytest.approx(statistics.fmean(acers))
        assert block["std"]["at_eer"]["acer"] == pytest.approx(np.std(acers, ddof=1))
        assert set(block["mean"]) <= set(on_disk["teacher"]) | {"threshold"}  # the shape of a metrics object
    distilled = [r["at_eer"]["acer"] for r in on_disk["distilled"]["seeds"]]
    plain = [r["at_eer"]["acer"] for r in on_disk["no_teacher"]["seeds"]]
    assert on_disk["comparison"]["verdict"] == verdict(distilled, plain)
    assert on_disk["comparison"]["delta_acer_pp"] == pytest.approx(100 * (np.mean(distilled) - np.mean(plain)))
    report = (out / "report.md").read_text()
    assert on_disk["comparison"]["verdict"] in report and "never on gamma" in report
    assert on_disk["onnx"]["bytes"] == (out / "student.onnx").stat().st_size and on_disk["onnx"]["median_ms"] > 0
    assert (out / "acer.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # A second run reuses every finished stage (no re-training, no re-export) and keeps their times.
    stamps = {p: p.stat().st_mtime_ns for p in (out / "teacher.pt", out / "student.onnx",
                                                out / "runs" / "distilled" / "seed0" / "best.pt")}
    messages.clear()
    again = run_demo(out, TINY, progress=False, log=messages.append)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert not any("teacher-finetune" in m or "export" in m or "train " in m for m in messages)
    trained = {k: v for k, v in summary["stage_seconds"].items() if k.startswith(("synth", "teacher", "train"))}
    assert trained and all(again["stage_seconds"][k] == v for k, v in trained.items())
    assert again["seconds"] >= sum(trained.values())


def test_unknown_demo_recipe_is_one_line(tmp_path):
    with pytest.raises(FasdError, match="no demo for recipe 'nope'; demos exist for: vlmkd"):
        run_demo(tmp_path, TINY, recipe="nope", progress=False)
