"""fasd experiment: a tiny matrix on synthetic data (run, fail, skip, resume, dry-run) and the aggregation."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest

from fasd.config import load_registry
from fasd.data.open_source import open_source
from fasd.errors import FasdError
from fasd.experiment import (parse_assignments, parse_references, parse_seeds, report_experiment,
                             run_experiment)
from fasd.experiment.plan import build_plan
from fasd.teacher_cache.job import CacheOptions, run_cache
from fasd.teacher_cache.registry import TeacherOptions, load_teacher

PROTOCOLS = ["holdout-gamma", "alpha-to-beta"]
SEEDS = [0, 1]
ABLATIONS = ["full", "no-teacher"]
TRAIN = {"epochs": 1, "max_draws": 32, "batch_size": 16, "device": "cpu", "workers": 0}  # workers: no forks
ROUTES = {"holdout-gamma": "alpha + beta → gamma", "alpha-to-beta": "alpha → beta"}
FINISHED = {f"{p}/{store}/{ablation}/seed{s}" for p in PROTOCOLS for s in SEEDS
            for store, ablation in (("flip", "full"), ("none", "no-teacher"))}
MISSING = {f"{p}/missing/full/seed{s}" for p in PROTOCOLS for s in SEEDS}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def flip_store(tmp_path_factory, synth_config, tiny_flip_checkpoint) -> str:
    registry = load_registry(synth_config)
    loaded = load_teacher("flip-mcl", TeacherOptions(tiny_flip_checkpoint))
    path = str(tmp_path_factory.mktemp("store") / "flip.zarr")
    for name in registry.domains:
        run_cache(open_source(registry.dataset(name)), loaded, path, CacheOptions(batch_size=32, progress=False))
    return path


def _run(config, out: Path, stores: dict, lines: list, **kwargs):
    return run_experiment(config, PROTOCOLS, SEEDS, ABLATIONS, stores, out, dict(TRAIN),
                          kwargs.pop("references", {}), progress=False, echo=lines.append, **kwargs)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory, synth_config, flip_store):
    """The matrix with a second store that does not exist: its 4 cells fail, the other 8 finish."""
    out = tmp_path_factory.mktemp("exp") / "exp"
    lines: list[str] = []
    stores = {"flip": flip_store, "missing": str(out.parent / "missing.zarr")}
    outcome = _run(synth_config, out, stores, lines, references={"RA-TTA@alpha-to-beta": 43.70})
    return out, outcome, lines


def _metrics(out: Path, key: str) -> dict:
    return json.loads((out / "runs" / key / "metrics.json").read_text())


def _events(lines: list[str], event: str) -> int:
    """Progress lines look like "[3/12] done   <cell>: ..."."""
    return sum(line.split()[1] == event for line in lines if line.startswith("["))


def _pct(values: list[float]) -> str:
    mean = f"{100 * statistics.mean(values):.2f}"
    return f"{mean} ± {100 * statistics.stdev(values):.2f}" if len(values) > 1 else mean


@pytest.mark.slow
def test_failed_cells_are_recorded_and_the_rest_finish(experiment):
    out, outcome, lines = experiment
    assert set(outcome.trained) == FINISHED and not outcome.skipped
    failures = json.loads((out / "failures.json").read_text())
    assert {f["cell"] for f in failures} == MISSING
    assert all(f["error"].startswith("no teacher store at ") and "missing.zarr" in f["error"] for f in failures)
    assert all((out / "runs" / key / "metrics.json").is_file() for key in FINISHED)
    assert not any((out / "runs" / key).exists() for key in MISSING)
    assert _events(lines, "start") == 12 and _events(lines, "done") == 8 and _events(lines, "failed") == 4
    assert [row["state"] for row in json.loads((out / "plan.json").read_text())["cells"]] == ["new"] * 12


@pytest.mark.slow
def test_results_and_tables_match_the_run_metrics(experiment):
    out, _, _ = experiment
    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {f"{r['protocol']}/{r['store']}/{r['ablation']}/seed{r['seed']}" for r in rows} == FINISHED
    for row in rows:
        metrics = json.loads((Path(row["run_dir"]) / "metrics.json").read_text())
        assert float(row["acer_at_eer"]) == metrics["at_eer"]["acer"]
        assert float(row["eer"]) == metrics["eer"]
        assert float(row["acer_at_0.5"]) == metrics["at_0.5"]["acer"]
        assert float(row["bpcer_at_0.5"]) == metrics["at_0.5"]["bpcer"]
        assert int(row["best_epoch"]) == metrics["best_epoch"] == 1

    with open(out / "summary.csv", newline="") as handle:
        summary = {(r["protocol"], r["store"], r["ablation"]): r for r in csv.DictReader(handle)}
    tables = (out / "tables.md").read_text()
    for protocol in PROTOCOLS:
        runs = {ablation: [_metrics(out, f"{protocol}/{store}/{ablation}/seed{s}") for s in SEEDS]
                for store, ablation in (("flip", "full"), ("none", "no-teacher"))}
        acer = {a: [m["at_eer"]["acer"] for m in ms] for a, ms in runs.items()}
        full = summary[(protocol, "flip", "full")]
        assert float(full["acer_at_eer_mean"]) == pytest.approx(statistics.mean(acer["full"]))
        assert float(full["acer_at_eer_std"]) == pytest.approx(statistics.stdev(acer["full"]))
        assert full["seeds"] == "0 1"
        baseline = ("RA-TTA", 43.70) if protocol == "alpha-to-beta" else \
            ("no-teacher", 100 * statistics.mean(acer["no-teacher"]))
        delta = f"{100 * statistics.mean(acer['full']) - baseline[1]:+.2f} vs {baseline[0]}"
        eer = _pct([m["eer"] for m in runs["full"]])
        acer_05 = _pct([m["at_0.5"]["acer"] for m in runs["full"]])
        assert (f"| {protocol} | {ROUTES[protocol]} | distilled [flip] | 2 | {_pct(acer['full'])} | {delta} | "
                f"{eer} | {acer_05} |") in tables
        no_teacher = [m["at_eer"]["acer"] for m in runs["no-teacher"]]
        assert f"| {protocol} | {ROUTES[protocol]} | no teacher (CE only) | 2 | {_pct(no_teacher)} |  |" in tables
    assert "| alpha-to-beta | alpha → beta | RA-TTA |  | 43.70 |" in tables
    assert (out / "plots" / "acer_flip_full.png").read_bytes().startswith(b"\x89PNG")
    assert (out / "plots" / "roc_holdout-gamma_none_no-teacher.png").is_file()


@pytest.mark.slow
def test_rerun_skips_finished_cells_and_resumes_an_interrupted_one(experiment, synth_config, flip_store):
    out, _, _ = experiment
    stamps = {key: (out / "runs" / key / "metrics.json").stat().st_mtime_ns for key in FINISHED}
    lines: list[str] = []
    again = _run(synth_config, out, {"flip": flip_store}, lines)
    assert set(again.skipped) == FINISHED and not again.trained and not again.failed
    assert _events(lines, "skip") == 8 and _events(lines, "start") == 0
    assert {key: (out / "runs" / key / "metrics.json").stat().st_mtime_ns for key in FINISHED} == stamps
    assert json.loads((out / "failures.json").read_text()) == []

    # A cell killed after its last epoch keeps last.pt but has no metrics.json: it is resumed, not restarted.
    cell = "alpha-to-beta/flip/full/seed1"
    before = _metrics(out, cell)
    (out / "runs" / cell / "metrics.json").unlink()
    lines.clear()
    resumed = _run(synth_config, out, {"flip": flip_store}, lines)
    assert resumed.trained == [cell] and set(resumed.skipped) == FINISHED - {cell}
    assert any(line.endswith(f"resume {cell}") for line in lines)
    after = _metrics(out, cell)
    assert after["at_eer"] == before["at_eer"] and after["eer"] == before["eer"]
    assert len((out / "runs" / cell / "log.jsonl").read_text().splitlines()) == 1  # no epoch trained again


@pytest.mark.slow
def test_dry_run_trains_nothing(experiment, tmp_path, synth_config, flip_store):
    lines: list[str] = []
    fresh = _run(synth_config, tmp_path / "dry", {"flip": flip_store, "clip": "clip.zarr"}, lines, dry_run=True)
    assert not (tmp_path / "dry").exists()
    assert len(fresh.plan) == 12 and {row["state"] for row in fresh.plan} == {"new"}
    assert sum(row["store"] == "none" for row in fresh.plan) == 4  # no-teacher: once per protocol × seed
    assert lines[0].startswith("12 cell(s): 12 to run, 0 to resume, 0 finished")

    out, _, _ = experiment
    plan_stamp = (out / "plan.json").stat().st_mtime_ns
    existing = _run(synth_config, out, {"flip": flip_store, "missing": "missing.zarr"}, [], dry_run=True)
    states = {row["cell"]: row["state"] for row in existing.plan}
    assert {k for k, s in states.items() if s == "finished"} == FINISHED
    assert {k for k, s in states.items() if s == "new"} == MISSING
    assert (out / "plan.json").stat().st_mtime_ns == plan_stamp


def test_ctrl_c_stops_the_matrix_but_other_errors_do_not(monkeypatch, synth_config, tmp_path):
    seeds = []

    class FailingTrainer:
        def __init__(self, registry, options, run_dir, progress):
            self.seed = options.seed

        def run(self, resume=False):
            seeds.append(self.seed)
            raise RuntimeError("boom\nmore detail") if self.seed == 0 else KeyboardInterrupt

    monkeypatch.setattr("fasd.experiment.runner.Trainer", FailingTrainer)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(synth_config, ["alpha-to-beta"], [0, 1, 2], ["no-teacher"], {}, tmp_path / "exp", {}, {},
                       progress=False, echo=lambda _: None)
    assert seeds == [0, 1]  # seed 2 never started
    failures = json.loads((tmp_path / "exp" / "failures.json").read_text())
    assert [(f["cell"], f["error"]) for f in failures] == [("alpha-to-beta/none/no-teacher/seed0",
                                                             "RuntimeError: boom")]


def _fake_run(out: Path, protocol: str, store: str, ablation: str, seed: int, acer: float) -> None:
    run_dir = out / "runs" / protocol / store / ablation / f"seed{seed}"
    run_dir.mkdir(parents=True)
    metrics = {"seed": seed, "sources": ["oulu"], "target": "replay", "best_epoch": 3, "eer": acer - 0.01,
               "hter": acer + 0.02, "auc": 0.9, "at_eer": {"apcer": acer, "bpcer": acer, "acer": acer},
               "at_0.5": {"apcer": 0.5, "bpcer": 0.1, "acer": 0.3}}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    (run_dir / "scores.csv").write_text("frame_id,label,score\na,0,0.1\nb,0,0.6\nc,1,0.4\nd,1,0.9\n")


def test_report_aggregates_known_values(tmp_path):
    out = tmp_path / "exp"
    for seed, acer in enumerate((0.20, 0.30, 0.25)):
        _fake_run(out, "oulu-to-replay", "flip", "full", seed, acer)
    _fake_run(out, "oulu-to-replay", "none", "no-teacher", 0, 0.35)
    _fake_run(out, "oulu-to-replay", "clip", "full", 0, 0.31)
    _fake_run(out, "oulu-to-replay", "flip", "kl-only", 0, 0.27)
    (out / "plan.json").write_text(json.dumps({"references": {"RA-TTA@oulu-to-replay": 43.70}}))

    paths = report_experiment(out)
    tables = (out / "tables.md").read_text()
    # Sample std (ddof = 1) of 20, 30, 25 is 5.00 (the population std would be 4.08).
    assert "| oulu-to-replay | oulu → replay | distilled [flip] | 3 | 25.00 ± 5.00 | -18.70 vs RA-TTA | " \
           "24.00 ± 5.00 | 30.00 ± 0.00 |" in tables
    assert "| no teacher (CE only) | 1 | 35.00 |  | 34.00 | 30.00 |" in tables
    assert "| full (KL + feature + SSDG) [flip] | 3 | 25.00 ± 5.00 | -10.00 vs no-teacher |" in tables
    assert "| teacher [clip] | 1 | 31.00 | -4.00 vs no-teacher |" in tables  # Table 4: two stores
    assert "| KL only [flip] | 1 | 27.00 | -8.00 vs no-teacher |" in tables  # Table 5
    with open(out / "summary.csv", newline="") as handle:
        flip = next(r for r in csv.DictReader(handle) if r["store"] == "flip" and r["ablation"] == "full")
    assert float(flip["acer_at_eer_std"]) == pytest.approx(0.05) and flip["seeds"] == "0 1 2"
    assert {out / "plots" / "acer_flip_full.png", out / "plots" / "roc_oulu-to-replay_flip_full.png"} <= set(paths)
    assert all(p.is_file() for p in paths)

    # Explicit references replace the recorded ones.
    report_experiment(out, {})
    assert "RA-TTA" not in (out / "tables.md").read_text()
    with pytest.raises(FasdError, match="not an experiment folder"):
        report_experiment(tmp_path / "nowhere")


def test_plan_cells_options_and_validation(synth_config, tmp_path):
    registry = load_registry(synth_config)
    cells = build_plan(registry, ["alpha-to-beta"], [3], ["kl-ssdg", "kl-only", "kl-feat", "no-teacher"], {},
                       {"store": "teacher.zarr", "epochs": 2, "lr": None})  # None: not given
    by_ablation = {c.ablation: c for c in cells}
    assert [c.key for c in cells] == ["alpha-to-beta/default/kl-ssdg/seed3", "alpha-to-beta/default/kl-only/seed3",
                                      "alpha-to-beta/default/kl-feat/seed3", "alpha-to-beta/none/no-teacher/seed3"]
    assert cells[0].run_dir(tmp_path) == tmp_path / "runs/alpha-to-beta/default/kl-ssdg/seed3"
    weights = {a: (c.options.lambda_kl, c.options.lambda_feat, c.options.lambda_triplet)
               for a, c in by_ablation.items()}
    assert weights == {"kl-ssdg": (1.0, 0.0, 0.5), "kl-only": (1.0, 0.0, 0.0), "kl-feat": (1.0, 1.0, 0.0),
                       "no-teacher": (1.0, 1.0, 0.5)}
    assert by_ablation["no-teacher"].options.no_teacher and by_ablation["no-teacher"].options.store is None
    assert by_ablation["kl-only"].options.store == str(Path("teacher.zarr").resolve())
    assert all(c.options.epochs == 2 and c.options.lr == 1e-3 and c.options.seed == 3 for c in cells)
    assert all(c.options.sources == ["alpha"] and c.options.target == "beta" for c in cells)

    for bad, message in ((dict(ablations=["kl"]), "unknown ablation"), (dict(protocols=["alpha-to-alpha"]),
                         "unknown protocol"), (dict(stores={"a/b": "x"}), "store name"),
                         (dict(stores={"none": "x"}), "store name"), (dict(overrides={"lambda_kll": 1}),
                         "unknown training option"), (dict(seeds=[]), "at least one seed")):
        args = {"protocols": ["holdout-gamma"], "seeds": [0], "ablations": ["full"], "stores": {}, "overrides": {},
                **bad}
        with pytest.raises(FasdError, match=message):
            build_plan(registry, args["protocols"], args["seeds"], args["ablations"], args["stores"],
                       args["overrides"])
    with pytest.raises(FasdError, match="not one of the planned protocols"):
        run_experiment(synth_config, ["holdout-gamma"], [0], ["full"], {}, tmp_path, {}, {"X@holdout-beta": 1.0},
                       dry_run=True, echo=lambda _: None)


def test_parse_cli_values():
    assert parse_assignments(["flip=a.zarr,clip=s3://b/c.zarr", "x=1"], "--stores") == \
        {"flip": "a.zarr", "clip": "s3://b/c.zarr", "x": "1"}
    assert parse_references(parse_assignments(["RA-TTA@oulu-to-replay=43.70"], "--reference")) == \
        {"RA-TTA@oulu-to-replay": 43.70}
    assert parse_seeds("0, 1,2") == [0, 1, 2]
    for call, message in ((lambda: parse_assignments(["flip"], "--stores"), "NAME=VALUE"),
                          (lambda: parse_assignments(["a=1,a=2"], "--stores"), "twice"),
                          (lambda: parse_references({"RA": "high"}), "ACER in %"),
                          (lambda: parse_references({"RA@": "1"}), "NAME@PROTOCOL"),
                          (lambda: parse_seeds("0,x"), "integers")):
        with pytest.raises(FasdError, match=message):
            call()
