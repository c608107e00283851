"""`fasd demo`: the multi-seed statistics (t and F quantiles against printed tables, the Welch interval against a
textbook example), the verdict on hand cases and, as a property, never claiming more than its intervals show; and a
shrunken demo end to end (every stage for real at tiny sizes; a re-run reuses them and keeps the original stage
times)."""

from __future__ import annotations

import json
import math
import statistics

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fasd.demo import DemoBudget, run_demo
from fasd.demo import pipeline
from fasd.demo.recipes import matched_tau
from fasd.demo.stats import (aggregate, compare, f_cdf, f_quantile, std_ratio, std_ratio_interval, t_cdf, t_quantile,
                             welch_interval)
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


@pytest.mark.parametrize(("p", "df", "table"), [
    (0.975, 1, 12.7062), (0.975, 2, 4.3027), (0.975, 4, 2.7764), (0.975, 10, 2.2281), (0.975, 30, 2.0423),
    (0.995, 3, 5.8409), (0.95, 5, 2.0150), (0.975, 1e7, 1.9600), (0.025, 4, -2.7764)])
def test_t_quantile_matches_the_printed_table(p: float, df: float, table: float) -> None:
    assert t_quantile(p, df) == pytest.approx(table, abs=1e-4)


@pytest.mark.parametrize(("p", "d1", "d2", "table"), [
    (0.95, 4, 10, 3.4780), (0.975, 2, 2, 39.000), (0.95, 1, 1, 161.45), (0.99, 5, 20, 4.1027)])
def test_f_quantile_matches_the_printed_table(p: float, d1: int, d2: int, table: float) -> None:
    assert f_quantile(p, d1, d2) == pytest.approx(table, rel=1e-4)


@given(st.floats(0.001, 0.999), st.floats(1.0, 200))
def test_quantiles_invert_their_cdfs_for_fractional_degrees_of_freedom(p: float, df: float) -> None:
    assert t_cdf(t_quantile(p, df), df) == pytest.approx(p, abs=1e-8)
    assert f_cdf(f_quantile(p, df, df + 1.5), df, df + 1.5) == pytest.approx(p, abs=1e-8)


def test_welch_interval_matches_the_textbook_sleep_example() -> None:
    """R's ``t.test(extra ~ group, data = sleep)`` (Student's sleep data): t = -1.8608, df = 17.776,
    95 percent confidence interval -3.3654832 0.2054832."""
    first = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
    second = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]
    delta, low, high, df = welch_interval(first, second)
    assert delta == pytest.approx(-1.58) and df == pytest.approx(17.776, abs=1e-3)
    assert (low, high) == pytest.approx((-3.3654832, 0.2054832), abs=1e-6)


def test_std_ratio_interval_by_hand() -> None:
    """Sample variances 4 and 1 over 3 seeds each: F(2, 2) quantiles are 1/39 and 39."""
    low, high = std_ratio_interval([1.0, 3.0, 5.0], [1.0, 2.0, 3.0])
    assert (low, high) == pytest.approx((math.sqrt(4 / 39), math.sqrt(4 * 39)))
    assert std_ratio_interval([1.0, 1.0], [1.0, 2.0]) is None


def test_verdict_clear_win_states_the_interval_and_paper_a() -> None:
    block = compare([0.20, 0.22, 0.24], [0.40, 0.42, 0.44])
    assert block["delta_acer_pp"] == pytest.approx(-20.0) and block["delta_ci"][1] < 0
    half = t_quantile(0.975, 4) * math.sqrt(2 * 0.0004 / 3) * 100  # equal variances: Welch df = 4
    assert block["delta_ci"] == pytest.approx([-20.0 - half, -20.0 + half])
    text = block["verdict"]
    assert text.startswith("Over 3 + 3 seeds, distillation lowers the held-out ACER (Δ mean held-out ACER -20.00 pp, "
                           f"95 % CI [{-20 - half:+.2f}, {-20 + half:+.2f}] pp)")
    assert "paper A's -13 to -9 pp lies outside the interval" in text
    assert "the spreads cannot be told apart (no-teacher std / distilled std 1.00x" in text


def test_verdict_interval_across_zero_cannot_tell() -> None:
    text = compare([0.28, 0.30, 0.32], [0.29, 0.31, 0.33])["verdict"]
    assert "cannot tell whether distillation lowers or raises" in text and "the interval includes 0" in text
    assert "distillation lowers the held-out ACER (" not in text and "distillation raises the" not in text


def test_verdict_distillation_that_hurts_says_so() -> None:
    assert "distillation raises the held-out ACER (Δ mean held-out ACER +10.00 pp" in compare(
        [0.40, 0.41, 0.42], [0.30, 0.31, 0.32])["verdict"]


def test_verdict_degenerate_cases() -> None:
    assert "no verdict" in compare([0.2], [0.3, 0.4])["verdict"]
    same = compare([0.3, 0.3, 0.3], [0.2, 0.2, 0.2])
    assert same["delta_ci"] is None and "no interval" in same["verdict"] and "no std ratio" in same["verdict"]
    one_flat = compare([0.3, 0.3, 0.3], [0.1, 0.3, 0.5])  # Welch works with one spread; the ratio does not
    assert one_flat["delta_ci"] is not None and one_flat["std_ratio"] is None
    assert std_ratio(0.08, 0.01) == pytest.approx(8.0) and std_ratio(0.1, 0.0) is None


seed_acers = st.lists(st.floats(0.0, 1.0), min_size=2, max_size=6)


@given(seed_acers, seed_acers)
def test_verdict_never_claims_more_than_its_intervals(distilled: list[float], no_teacher: list[float]) -> None:
    block = compare(distilled, no_teacher)
    text, ci, ratio_ci = block["verdict"], block["delta_ci"], block["std_ratio_ci"]
    lowers, raises = "distillation lowers the held-out" in text, "distillation raises the held-out" in text
    assert lowers == (ci is not None and ci[1] < 0)
    assert raises == (ci is not None and ci[0] > 0)
    assert ("cannot tell" in text) == (ci is not None and ci[0] <= 0 <= ci[1])
    assert ("spread is tighter" in text) == (ratio_ci is not None and ratio_ci[0] > 1)
    assert ("spread is wider" in text) == (ratio_ci is not None and ratio_ci[1] < 1)
    if ci is not None:
        assert ci[0] <= block["delta_acer_pp"] <= ci[1]


def test_matched_tau_puts_the_median_soft_target_at_0_9() -> None:
    gaps = [2.0, 6.0, 9.0]  # median gap 6: softmax(gap / tau) of the median frame is 0.9
    tau = matched_tau([(0.0, g) for g in gaps[:2]] + [(g, 0.0) for g in gaps[2:]])
    assert 1 / (1 + math.exp(-6.0 / tau)) == pytest.approx(0.9)
    assert matched_tau([(0.0, 0.5), (0.2, 0.0)]) == 1.0  # a teacher less sure than 0.9 is not sharpened


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
    for name in ("summary.json", "report.md", "acer.png", "roc.png", "student.onnx", "teacher.onnx", "timings.json"):
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
    assert on_disk["comparison"] == json.loads(json.dumps(compare(distilled, plain)))
    assert on_disk["comparison"]["delta_acer_pp"] == pytest.approx(100 * (np.mean(distilled) - np.mean(plain)))
    try:
        _, low, high, _ = welch_interval(distilled, plain)
        assert on_disk["comparison"]["delta_ci"] == pytest.approx([100 * low, 100 * high])
    except ValueError:  # the seeds of so tiny a run may all score alike: then there is no interval
        assert on_disk["comparison"]["delta_ci"] is None
    report = (out / "report.md").read_text()
    assert on_disk["comparison"]["verdict"] in report and "never on gamma" in report
    assert on_disk["onnx"]["bytes"] == (out / "student.onnx").stat().st_size and on_disk["onnx"]["median_ms"] > 0
    assert (out / "acer.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # A second run reuses every finished stage (no re-training, no re-export) and keeps their times.
    stamps = {p: p.stat().st_mtime_ns for p in (out / "teacher.onnx", out / "student.onnx",
                                                out / "runs" / "distilled" / "seed0" / "best.pt")}
    messages.clear()
    again = run_demo(out, TINY, progress=False, log=messages.append)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert not any(m.split("] ")[-1].startswith(("teacher", "export", "train ")) for m in messages)
    trained = {k: v for k, v in summary["stage_seconds"].items() if k.startswith(("synth", "teacher", "train"))}
    assert trained and all(again["stage_seconds"][k] == v for k, v in trained.items())
    assert again["seconds"] >= sum(trained.values())


def test_unknown_demo_recipe_is_one_line(tmp_path):
    with pytest.raises(FasdError, match="no demo for recipe 'nope'; demos exist for: vlmkd"):
        run_demo(tmp_path, TINY, recipe="nope", progress=False)


def _hter(labels: np.ndarray, scores: np.ndarray, threshold: float) -> float:
    """(APCER + BPCER) / 2 with score >= threshold accepted as live (spoof = 0, live = 1)."""
    accepted = scores >= threshold
    return ((accepted[labels == 0]).mean() + (~accepted[labels == 1]).mean()) / 2


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mann-Whitney: P(live score > spoof score) + half the ties."""
    live, spoof = scores[labels == 1][:, None], scores[labels == 0][None, :]
    return float((live > spoof).mean() + 0.5 * (live == spoof).mean())


def _csv_scores(path) -> tuple[np.ndarray, np.ndarray]:
    table = np.loadtxt(path, delimiter=",", skiprows=1, usecols=(1, 2))
    return table[:, 0].astype(int), table[:, 1]


def _row(section: str, model: str) -> list[str]:
    """The cells of a report table row (ACER@EER, ACER_ISO, HTER, EER, AUC) for ``model`` in ``section``."""
    line = next(line for line in section.splitlines() if line.startswith(f"| {model}"))
    return [cell.strip() for cell in line.strip("|").split("|")][1:]


@pytest.mark.slow
def test_shrunken_mmda_demo_reports_both_settings_as_recomputed(tmp_path):
    """mmda: multimodal data, both held-out settings in summary and report; the teacher's depth-missing scores
    recomputed from its checkpoint (depth zeroed and masked out), the students' from theirs (depth the zero
    image), and the report's cells recomputed from the runs' score files."""
    import torch

    from fasd.config import load_registry
    from fasd.constants import MODALITIES, NORMALIZATIONS
    from fasd.data.open_source import open_source
    from fasd.student_train.checkpoint import load_student, read_checkpoint
    from fasd.teacher_cache.mmda.finetune import load_mmda_teacher
    from fasd.teacher_cache.preprocess import normalize_batch, resize_uint8
    from fasd.training.transforms import eval_transform

    out = tmp_path / "demo-mmda"
    summary = run_demo(out, TINY, recipe="mmda", progress=False, log=lambda _message: None)
    source = open_source(load_registry(out / "data" / "demo.toml").dataset("gamma"))
    assert source.modalities == MODALITIES and summary["modalities"] == list(MODALITIES)
    rows = source.table.rows_in_splits(["test"])
    frames = [source.read_modalities(int(r)) for r in rows]
    depth = MODALITIES.index("depth")

    teacher = load_mmda_teacher(out / "teacher_mmda.pt")
    mean, std = NORMALIZATIONS["clip"]
    images = {m: normalize_batch(torch.from_numpy(np.stack([
        resize_uint8(np.zeros_like(f[m]) if m == "depth" else f[m], teacher.input_size) for f in frames])), mean, std)
        for m in MODALITIES}
    mask = torch.from_numpy(np.stack([f["mask"] for f in frames]))
    mask[:, depth] = False
    with torch.no_grad():
        expected = torch.softmax(teacher(images, mask)["logits"].double(), dim=1)[:, 1].numpy()
    labels, teacher_scores = _csv_scores(out / "teacher-scores-missing-depth.csv")
    np.testing.assert_array_equal(labels, source.table.label[rows])
    np.testing.assert_allclose(teacher_scores, expected, atol=1e-5)

    student, _meta = load_student(out / "runs" / "distilled" / "seed0" / "best.pt")
    transform = eval_transform()
    stacks = [[transform(np.zeros_like(f[m]) if m == "depth" else f[m]) for m in MODALITIES] for f in frames]
    with torch.no_grad():
        _, p_live = student.deployable()(*(torch.stack(s) for s in zip(*stacks)))
    np.testing.assert_allclose(_csv_scores(out / "runs" / "distilled" / "seed0" / "scores-missing-depth.csv")[1],
                               p_live.numpy(), atol=1e-5)

    report = (out / "report.md").read_text()
    full, missing = report.split("## Held-out gamma, depth missing")
    assert "## Held-out gamma, all modalities (rgb, depth, ir)" in full
    block = summary["missing"]["depth"]
    assert block["missing"] == ["depth"] and set(block) >= {"teacher", "distilled", "no_teacher", "comparison"}
    assert _row(missing, "teacher")[4] == f"{100 * _auc(labels, teacher_scores):.2f}"
    assert block["teacher"]["auc"] == pytest.approx(_auc(labels, teacher_scores))
    for section, scores_file, summary_block in ((full, "scores.csv", summary), (missing, "scores-missing-depth.csv",
                                                                                block)):
        for key, name in (("distilled", "student, distilled"), ("no_teacher", "student, no teacher")):
            hters = []
            for seed in (0, 1):
                run = out / "runs" / key / f"seed{seed}"
                threshold = read_checkpoint(run / "best.pt")["val_threshold"]
                hters.append(_hter(*_csv_scores(run / scores_file), threshold))
            assert [r["hter"] for r in summary_block[key]["seeds"]] == pytest.approx(hters)
            assert _row(section, name)[2] == f"{100 * np.mean(hters):.2f} ± {100 * np.std(hters, ddof=1):.2f}"
        acers = {key: [r["at_eer"]["acer"] for r in summary_block[key]["seeds"]] for key in ("distilled", "no_teacher")}
        assert summary_block["comparison"]["verdict"] == compare(acers["distilled"], acers["no_teacher"])["verdict"]
        assert summary_block["comparison"]["verdict"] in section
    for name in ("acer.png", "roc.png", "acer-missing-depth.png", "roc-missing-depth.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))


def test_demo_folder_holds_one_recipe(tmp_path):
    """Another recipe's teacher checkpoint, or synthetic data of other modalities, is refused in one line."""
    from fasd.config import write_config
    from fasd.data.synth import synthesize

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "teacher.onnx").write_bytes(b"")
    with pytest.raises(FasdError, match=r"holds the vlmkd demo \(teacher.onnx\); run --recipe mmda in another folder"):
        run_demo(tmp_path / "a", TINY, recipe="mmda", progress=False)
    data = tmp_path / "b" / "data"
    synthesize(data, domains=3, frames=36, size=32, progress=False)
    write_config(data / "demo.toml", {n: {"format": "hdf5", "path": f"{n}.h5"} for n in ("alpha", "beta", "gamma")},
                 ["alpha", "beta", "gamma"])
    with pytest.raises(FasdError, match="holds synthetic domains of rgb; this demo needs rgb, depth, ir"):
        run_demo(tmp_path / "b", TINY, recipe="mmda", progress=False)
    with pytest.raises(FasdError, match="holds synthetic domains of the 'cues' world \\(an older fasd demo\\); this "
                                        "demo needs the 'shared' world: give --out another folder"):
        run_demo(tmp_path / "b", TINY, recipe="vlmkd", progress=False)  # rgb, but no world.txt: fasd 0.2's


def test_demo_help_lists_every_recipe_and_the_default():
    from helpers import fasd

    from fasd.demo import DEMO_RECIPES

    result = fasd("demo", "--help")
    assert result.exit_code == 0
    text = " ".join(result.output.replace("│", " ").split())
    assert all(name in text for name in DEMO_RECIPES) and "vlmkd (the default" in text
