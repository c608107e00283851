"""fasd experiment over intra-X protocols: OULU-like packs, each trained, selected and tested on its own splits,
tabulated in the layout of HaTFAS' OULU-NPU table (protocol rows; folds pooled as mean ± std of their seed means)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from fasd.cli import app
from fasd.config import load_registry, write_config
from fasd.data.open_source import open_source
from fasd.errors import FasdError
from fasd.experiment import report_experiment, run_experiment
from fasd.experiment.intra import IntraRow, row_of
from fasd.experiment.plan import build_plan

FOLDS = {"oulu_p1": "alpha", "oulu_p3_1": "beta", "oulu_p3_2": "gamma"}  # dataset -> synthetic pack
PROTOCOLS = [f"intra-{name}" for name in FOLDS]
SEEDS = [0, 1]
TRAIN = {"epochs": 1, "max_draws": 16, "batch_size": 8, "device": "cpu", "workers": 0}
NO_TEACHER = "vlmkd: no teacher (CE only)"
# metrics.json paths of the table's columns: worst-type APCER, BPCER, ISO ACER at the Dev threshold, HTER
COLUMNS = (("at_val", "apcer_worst_type"), ("at_val", "bpcer"), ("at_val", "acer_iso"), ("hter",))


@pytest.fixture(scope="module")
def oulu_config(tmp_path_factory, synth_config) -> Path:
    """The synthetic packs registered under OULU-NPU protocol-fold names."""
    config = tmp_path_factory.mktemp("oulu") / "fasd.toml"
    write_config(config, {name: {"format": "hdf5", "path": str(synth_config.parent / f"{pack}.h5")}
                          for name, pack in FOLDS.items()}, None)
    return config


@pytest.fixture(scope="module")
def experiment(tmp_path_factory, oulu_config):
    out = tmp_path_factory.mktemp("exp") / "exp"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        outcome = run_experiment(oulu_config, PROTOCOLS, SEEDS, ["no-teacher"], {}, out, dict(TRAIN), {},
                                 progress=False, echo=lambda _: None)
    finally:
        torch.set_num_threads(threads)
    return out, outcome


def _value(metrics: dict, path: tuple[str, ...]) -> float:
    for key in path:
        metrics = metrics[key]
    return metrics


def _pct(values: list[float]) -> str:
    return f"{100 * statistics.mean(values):.2f} ± {100 * statistics.stdev(values):.2f}"


def test_intra_protocols_resolve_to_one_dataset_and_are_listed(oulu_config):
    registry = load_registry(oulu_config)
    protocol = registry.protocol("intra-oulu_p3_2")
    assert (protocol.sources, protocol.target) == (("oulu_p3_2",), "oulu_p3_2")
    with pytest.raises(FasdError, match="valid protocols: .*intra-oulu_p1, intra-oulu_p3_1, intra-oulu_p3_2"):
        registry.protocol("intra-oulu_p2")


@pytest.mark.slow  # 6 tiny training runs: ~30 s on 2 idle cores
def test_each_fold_trains_selects_and_tests_on_its_own_splits(experiment, oulu_config):
    out, outcome = experiment
    assert len(outcome.trained) == len(PROTOCOLS) * len(SEEDS) and not outcome.failed
    registry = load_registry(oulu_config)
    for name in FOLDS:
        for seed in SEEDS:
            run_dir = out / "runs" / f"intra-{name}" / "none" / "no-teacher" / f"seed{seed}"
            metrics = json.loads((run_dir / "metrics.json").read_text())
            config = json.loads((run_dir / "config.json").read_text())
            assert metrics["sources"] == config["sources"] == [name] and metrics["target"] == name
            assert metrics["n"] == len(open_source(registry.dataset(name)).table.rows_in_splits(["test"]))
            assert "val" in metrics["threshold"] and config["recipe"] == "vlmkd"


@pytest.mark.slow
def test_oulu_table_matches_the_runs_metrics(experiment):
    out, _ = experiment
    tables = (out / "tables.md").read_text()
    metrics = {name: [json.loads((out / "runs" / f"intra-{name}" / "none" / "no-teacher" / f"seed{seed}" /
                                  "metrics.json").read_text()) for seed in SEEDS] for name in FOLDS}
    # Protocol 1, one fold: mean ± sample std over its seeds.
    p1 = " | ".join(_pct([_value(m, path) for m in metrics["oulu_p1"]]) for path in COLUMNS)
    assert f"| Protocol 1 | {NO_TEACHER} | 1 × 2 | seeds | {p1} |" in tables
    # Protocol 3, two folds: each fold's mean over seeds, then mean ± sample std over the folds.
    fold_means = {path: [statistics.mean(_value(m, path) for m in metrics[fold]) for fold in ("oulu_p3_1",
                                                                                            "oulu_p3_2")]
                  for path in COLUMNS}
    p3 = " | ".join(_pct(fold_means[path]) for path in COLUMNS)
    assert f"| Protocol 3 | {NO_TEACHER} | 2 × 2 | folds | {p3} |" in tables
    # HaTFAS' reported FAR / FRR / HTER beside the protocols run, and no cross-domain tables.
    assert "| Protocol 1 | HaTFAS (reported: FAR / FRR / HTER at argmax) |  |  | 0.00 | 0.50 | 0.25 |  |" in tables
    assert "| Protocol 3 | HaTFAS (reported: FAR / FRR / HTER at argmax) |  | folds | 0.83 ± 0.80 | 1.94 ± 2.76 | " \
           "1.39 ± 1.30 |  |" in tables
    assert "Protocol 2" not in tables and "Protocol 4" not in tables and "Table 1" not in tables
    fold = " | ".join(_pct([_value(m, path) for m in metrics["oulu_p3_2"]]) for path in COLUMNS)
    assert f"| intra-oulu_p3_2 | {NO_TEACHER} | 2 | {fold} |" in tables


def _fake_run(out: Path, protocol: str, sources: list[str], target: str, seed: int, rate: float) -> None:
    run_dir = out / "runs" / protocol / "flip" / "full" / f"seed{seed}"
    run_dir.mkdir(parents=True)
    rates = {"apcer": rate, "bpcer": rate, "acer": rate, "apcer_per_type": {"print": rate}, "apcer_worst_type": rate,
             "acer_iso": rate}
    metrics = {"seed": seed, "sources": sources, "target": target, "best_epoch": 1, "eer": rate, "hter": rate,
               "auc": 0.9, "recipe": "hatfas", "at_eer": rates, "at_0.5": rates, "at_val": rates}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))


def test_unrecognised_names_get_their_own_rows_beside_cross_domain_tables(tmp_path):
    out = tmp_path / "exp"
    _fake_run(out, "intra-replay", ["replay"], "replay", 0, 0.10)
    _fake_run(out, "intra-siw_p2", ["siw_p2"], "siw_p2", 0, 0.20)
    _fake_run(out, "alpha-to-beta", ["alpha"], "beta", 0, 0.30)
    report_experiment(out, {})
    tables = (out / "tables.md").read_text()
    assert "| Protocol 2 | hatfas: distilled [flip] | 1 × 1 | seeds | 20.00 | 20.00 | 20.00 | 20.00 |" in tables
    assert "| replay | hatfas: distilled [flip] | 1 × 1 | seeds | 10.00 | 10.00 | 10.00 | 10.00 |" in tables
    assert "HaTFAS (reported" not in tables  # its numbers are OULU-NPU's, not SiW's
    assert "| alpha-to-beta | alpha → beta |" in tables and "| intra-replay | replay → replay" not in tables
    assert row_of("oulu_p4_6") == IntraRow("Protocol 4", "oulu", 4) and row_of("oulu-npu") == IntraRow("oulu-npu")


def test_recipe_cells_and_ablations(oulu_config):
    registry = load_registry(oulu_config)
    cells = build_plan(registry, ["intra-oulu_p1"], [0], ["full", "no-teacher"], {}, dict(TRAIN), "hatfas")
    full, alone = cells
    assert (full.options.recipe, full.options.student, full.options.layers) == ("hatfas", "deit-tiny", [4, 6, 8])
    weights = (full.options.lambda_ce, full.options.lambda_kl, full.options.lambda_head_aware)
    assert weights == pytest.approx((0.3, 0.7, 1.0))
    assert full.options.lr == pytest.approx(5e-4 * 8 / 512) and full.options.weight_decay == 0.05
    assert alone.options.no_teacher and alone.options.store is None
    with pytest.raises(FasdError, match="kl-only change nothing under --recipe hatfas.*valid for hatfas: full, "
                                        "no-teacher"):
        build_plan(registry, ["intra-oulu_p1"], [0], ["kl-only"], {}, {}, "hatfas")
    result = CliRunner().invoke(app, ["experiment", "--config", str(oulu_config), "--protocols", "intra-oulu_p9",
                                      "--recipe", "hatfas", "--dry-run"])
    assert result.exit_code == 2 and "unknown protocol 'intra-oulu_p9'" in result.output
    result = CliRunner().invoke(app, ["experiment", "--config", str(oulu_config), "--protocols", "intra-oulu_p1",
                                      "--recipe", "hatfas", "--seeds", "0", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "intra-oulu_p1/default/full/seed0" in result.output
