"""Paper B's protocols in fasd (issue 16, deliverable 5): limited-source protocols A,B-to-C,D with a pooled test
set, the missing-modality matrix of `fasd experiment`, and the tables in the layout of MMDA's Tables 1-3."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fasd.config import DatasetEntry, DatasetRegistry, load_registry
from fasd.constants import MODALITIES
from fasd.data.open_source import open_source, open_target
from fasd.data.pooled import PooledFrameSource
from fasd.data.synth import synthesize
from fasd.errors import FasdError
from fasd.evaluate.metrics import compute_metrics
from fasd.evaluate.scoring import metrics_for
from fasd.experiment.aggregate import METRICS, Group, Stat, missing_metric
from fasd.experiment.missing import MISSING
from fasd.experiment.mmda_tables import render_mmda, table1, table2, table3
from fasd.experiment.plan import parse_protocols

DOMAINS = ["cefa", "wmca", "padisi", "surf"]


def _registry(domains: list[str] = DOMAINS, extra: tuple[str, ...] = ()) -> DatasetRegistry:
    names = [*domains, *extra]
    return DatasetRegistry(Path("fasd.toml"), {n: DatasetEntry(n, "hdf5", Path(f"{n}.h5")) for n in names},
                           list(domains))


# ---------------------------------------------------------------- protocol parser

@pytest.mark.parametrize("name, expected", [
    ("holdout-wmca", ("holdout-wmca", ("cefa", "padisi", "surf"), ("wmca",), "wmca")),
    ("cefa-to-surf", ("cefa-to-surf", ("cefa",), ("surf",), "surf")),
    ("cefa,wmca-to-padisi,surf", ("cefa+wmca-to-padisi+surf", ("cefa", "wmca"), ("padisi", "surf"), "padisi+surf")),
    ("cefa+wmca-to-padisi+surf", ("cefa+wmca-to-padisi+surf", ("cefa", "wmca"), ("padisi", "surf"), "padisi+surf")),
    ("padisi,surf-to-wmca", ("padisi+surf-to-wmca", ("padisi", "surf"), ("wmca",), "wmca")),
    ("surf-to-cefa,wmca", ("surf-to-cefa+wmca", ("surf",), ("cefa", "wmca"), "cefa+wmca")),
    ("intra-oulu", ("intra-oulu", ("oulu",), ("oulu",), "oulu")),
])
def test_protocol_names_resolve(name, expected):
    protocol = _registry(extra=("oulu",)).protocol(name)
    assert (protocol.name, protocol.sources, protocol.targets, protocol.target) == expected


@pytest.mark.parametrize("name, problem", [
    ("cefa,cefa-to-surf", " (a dataset is listed twice)"),
    ("cefa-to-cefa,surf", " ('cefa' is both a source and a target)"),
    ("cefa,wmca-to-nope", " ('nope' is not a protocol domain)"),
    ("cefa,oulu-to-surf", " ('oulu' is not a protocol domain)"),  # registered, but not a protocol domain
    ("holdout-nope", ""),
])
def test_bad_protocols_are_one_line_errors(name, problem):
    with pytest.raises(FasdError) as caught:
        _registry(extra=("oulu",)).protocol(name)
    message = str(caught.value)
    assert message.startswith(f"unknown protocol '{name}'{problem}; valid protocols: holdout-cefa, ")
    assert "\n" not in message and message.endswith("or A,B-to-C,D (limited sources: any disjoint protocol domains)")


def test_protocol_listing_does_not_enumerate_subsets():
    n = len(DOMAINS)
    assert len(_registry(extra=("oulu",)).protocol_names()) == n + n * (n - 1) + n + 1


def test_explicit_protocol_pools_several_targets():
    registry = _registry(extra=("oulu",))
    protocol = registry.explicit_protocol(["oulu", "cefa"], ["surf", "wmca"])  # any registered dataset
    assert (protocol.name, protocol.target) == ("oulu+cefa-to-surf+wmca", "surf+wmca")
    assert registry.explicit_protocol(["cefa"], ["surf"]).name == "cefa-to-surf"  # single target: unchanged
    with pytest.raises(FasdError, match="target 'cefa' is also a source"):
        registry.explicit_protocol(["cefa"], ["surf", "cefa"])
    with pytest.raises(FasdError, match="--target lists 'surf' twice"):
        registry.explicit_protocol(["cefa"], ["surf", "surf"])
    with pytest.raises(FasdError, match="'surf\\+surf' lists 'surf' twice"):  # evaluate --dataset C+C
        registry.entries("surf+surf")
    assert [e.name for e in registry.entries("surf+wmca")] == ["surf", "wmca"]


@pytest.mark.parametrize("text, expected", [
    ("holdout-w,c,w-to-p,s", ["holdout-w", "c,w-to-p,s"]),
    ("c,w-to-p,s,holdout-w,p,s-to-c,w", ["c,w-to-p,s", "holdout-w", "p,s-to-c,w"]),
    ("a-to-b,c-to-d, intra-x", ["a-to-b", "c-to-d", "intra-x"]),
    ("a+b-to-c+d,c+d-to-a+b", ["a+b-to-c+d", "c+d-to-a+b"]),
    ("x,y", ["x", "y"]),  # not protocols: the registry says so, one by one
])
def test_experiment_protocol_lists(text, expected):
    assert parse_protocols(text) == expected


def test_ambiguous_protocol_list_is_refused():
    with pytest.raises(FasdError, match=r"'c' could be a target of 'a-to-b' or a source of 'd-to-e'; write "
                                        r"limited-source protocols with '\+'"):
        parse_protocols("a-to-b,c,d-to-e")


# ---------------------------------------------------------------- tiny multimodal data

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def mm_config(tmp_path_factory) -> Path:
    """Four tiny multimodal synthetic domains (alpha, beta, gamma, delta), 36 frames each at 32 px."""
    return synthesize(tmp_path_factory.mktemp("mm"), domains=4, frames=36, size=32, seed=0, progress=False,
                      modalities=MODALITIES)


def test_pooled_target_is_the_concatenation_of_the_targets(mm_config):
    registry = load_registry(mm_config)
    pooled = open_target(registry, "gamma+delta")
    parts = [open_source(registry.dataset(name)) for name in ("gamma", "delta")]
    assert isinstance(pooled, PooledFrameSource) and pooled.name == "gamma+delta"
    assert open_target(registry, "gamma").__class__ is parts[0].__class__  # one target: the dataset itself
    assert list(pooled.table.frame_id) == [f"{p.name}/{f}" for p in parts for f in p.table.frame_id]
    assert len(set(pooled.table.frame_id)) == len(pooled)
    last = len(pooled) - 1
    for name in (*MODALITIES, "mask"):
        np.testing.assert_array_equal(pooled.read_modalities(last)[name],
                                      parts[1].read_modalities(len(parts[1]) - 1)[name])
        np.testing.assert_array_equal(pooled.read_modalities(0)[name], parts[0].read_modalities(0)[name])
    # Metrics on the pooled test split == compute_metrics on the two test splits concatenated by hand.
    rows = pooled.table.rows_in_splits(["test"])
    scores = np.random.default_rng(0).random(len(rows))
    labels = np.concatenate([p.table.label[p.table.rows_in_splits(["test"])] for p in parts])
    attacks = np.concatenate([p.table.attack_type[p.table.rows_in_splits(["test"])] for p in parts])
    assert len(rows) == len(labels) and set(np.unique(labels)) == {0, 1}
    expected = compute_metrics(labels, scores, attacks, val_threshold=0.4)
    assert metrics_for(pooled, rows, scores, val_threshold=0.4) == expected
    video = metrics_for(pooled, rows, scores, video=True)  # video IDs stay unique across the pooled datasets
    videos = {f"{p.name}/{v}" for p in parts for v in p.table.video_id[p.table.rows_in_splits(["test"])]}
    assert video["n"] == len(videos)


# ---------------------------------------------------------------- tables on hand-made groups

def _group(protocol: str, sources: tuple[str, ...], target: str, values: dict[str, tuple[float, float | None]],
           store: str = "mmda", ablation: str = "full", seeds: int = 2) -> Group:
    stats = {name: Stat(None, None, 0) for name in METRICS}
    stats |= {missing_metric(m, s): Stat(None, None, 0) for m in METRICS for s in MISSING}
    stats |= {name: Stat(mean, std, seeds) for name, (mean, std) in values.items()}
    return Group(protocol, store, ablation, sources, target, (None,) * seeds, stats)  # runs: only counted here


def test_mmda_tables_exact_cells():
    wmca = _group("holdout-wmca", ("cefa", "padisi", "surf"), "wmca",
                  {"acer_at_eer": (0.1, 0.02), "auc": (0.9, 0.01), "hter": (0.2, 0.03), "eer": (0.1, 0.02),
                   missing_metric("acer_at_eer", "depth"): (0.3, 0.0), missing_metric("auc", "depth"): (0.8, 0.1),
                   missing_metric("acer_at_eer", "ir"): (0.2, 0.0), missing_metric("auc", "ir"): (0.7, 0.1),
                   missing_metric("acer_at_eer", "depth+ir"): (0.4, 0.0),
                   missing_metric("auc", "depth+ir"): (0.6, 0.1)})
    gamma = _group("holdout-gamma", ("alpha", "beta"), "gamma",
                   {"acer_at_eer": (0.3, None), "auc": (0.7, None),
                    missing_metric("acer_at_eer", "depth"): (0.5, None), missing_metric("auc", "depth"): (0.6, None)},
                   seeds=1)
    plain = _group("holdout-wmca", ("cefa", "padisi", "surf"), "wmca", {"acer_at_eer": (0.05, None),
                                                                       "auc": (0.95, None)},
                   store="none", ablation="no-teacher", seeds=1)
    header, rows = table1([wmca, gamma, plain])
    assert header[:8] == ["Protocol 1: method", "seeds", "→wmca (W) HTER (%)", "→wmca (W) AUC (%)",
                          "→gamma HTER (%)", "→gamma AUC (%)", "→S HTER (%)", "→S AUC (%)"]
    assert header[-2:] == ["Avg. HTER (%)", "Avg. AUC (%)"] and len(header) == 2 + 2 * 6
    reported = {row[0]: row for row in rows}
    mmda = reported["MMDA (reported by paper B, real datasets)"]
    assert mmda[2:4] == ["1.22", "99.99"] and mmda[4:6] == ["", ""] and mmda[6:8] == ["4.21", "98.62"]
    assert mmda[-2:] == ["4.00", "98.94"]
    assert reported["DADM (reported by paper B, real datasets)"][2:] == [""] * 10 + ["13.63", "92.96"]
    assert reported["fasd distilled [mmda]"] == ["fasd distilled [mmda]", "1–2", "10.00 ± 2.00", "90.00 ± 1.00",
                                                 "30.00", "70.00", "", "", "", "", "", "", "20.00", "80.00"]
    assert reported["fasd no teacher (CE only)"][1:6] == ["1", "5.00", "95.00", "", ""]

    header, rows = table2([wmca, gamma])
    assert header == ["Protocol 2: method", "seeds", "Missing D HTER (%)", "Missing D AUC (%)", "Missing I HTER (%)",
                      "Missing I AUC (%)", "Missing D & I HTER (%)", "Missing D & I AUC (%)", "Avg. HTER (%)",
                      "Avg. AUC (%)"]
    assert rows[0] == ["MMDA (reported by paper B, real datasets)", "", "11.10", "93.97", "5.98", "98.30", "13.36",
                       "93.74", "10.14", "95.33"]
    # depth: mean over the two targets (0.3, 0.5); ir and both: wmca only; Avg.: mean of the three settings
    assert rows[1] == ["fasd distilled [mmda]", "1–2", "40.00", "70.00", "20.00", "70.00", "40.00", "60.00",
                       "33.33", "66.67"]

    limited = _group("cefa+wmca-to-padisi+surf", ("cefa", "wmca"), "padisi+surf",
                     {"acer_at_eer": (0.07, 0.01), "auc": (0.97, 0.0)})
    synthetic = _group("alpha+beta-to-gamma+delta", ("alpha", "beta"), "gamma+delta",
                       {"acer_at_eer": (0.25, None), "auc": (0.75, None)}, seeds=1)
    header, rows = table3([limited, synthetic])
    assert header == ["Protocol 3: method", "seeds", "cefa+wmca → padisi+surf (CW→PS) HTER (%)",
                      "cefa+wmca → padisi+surf (CW→PS) AUC (%)", "alpha+beta → gamma+delta HTER (%)",
                      "alpha+beta → gamma+delta AUC (%)", "PS→CW HTER (%)", "PS→CW AUC (%)"]
    assert rows == [["MMDA (reported by paper B, real datasets)", "", "7.52", "96.84", "", "", "6.30", "98.35"],
                    ["fasd distilled [mmda]", "1–2", "7.00 ± 1.00", "97.00 ± 0.00", "25.00", "75.00", "", ""]]

    text = "\n".join(render_mmda([wmca, gamma, plain, limited]))
    assert "| holdout-wmca | fasd distilled [mmda] | depth | 2 | n/a | 30.00 ± 0.00 | n/a | 80.00 ± 10.00 |" in text
    assert "| holdout-wmca | fasd distilled [mmda] | none | 2 | 20.00 ± 3.00 | 10.00 ± 2.00 | 10.00 ± 2.00 |" in text
    assert "HTER is at the EER threshold of the target's test split" in text


# ---------------------------------------------------------------- end to end: fasd experiment --recipe mmda

def _json(output: str):
    return json.loads(output[output.index("{"):])


def _scores(path: Path) -> np.ndarray:
    return np.loadtxt(path, delimiter=",", skiprows=1, usecols=2)


@pytest.mark.slow
def test_experiment_mmda_protocols_end_to_end(tmp_path, mm_config, monkeypatch):
    """The no-teacher students of --recipe mmda (multimodal, no store to cache: the protocols, the missing matrix
    and the tables are under test here; distillation is test_mmda_e2e's)."""
    from helpers import fasd

    # --workers 0 would give the trainer every core; on a loaded 2-core machine one thread is ~10x faster
    monkeypatch.setattr("fasd.student_train.trainer.set_cpu_threads", lambda device, workers: None)

    out = tmp_path / "exp"
    args = ["experiment", "--recipe", "mmda", "--protocols", "holdout-delta,alpha,beta-to-gamma,delta", "--seeds", 0,
            "--ablations", "no-teacher", "--config", mm_config, "--out", out, "--epochs", 1, "--batch-size", 4,
            "--max-draws", 8, "--device", "cpu", "--workers", 0]
    result = fasd(*args)
    assert result.exit_code == 0, result.output
    runs = {p: out / "runs" / p / "none" / "no-teacher" / "seed0"
            for p in ("holdout-delta", "alpha+beta-to-gamma+delta")}
    metrics = {key: json.loads((run / "metrics.json").read_text()) for key, run in runs.items()}
    missing = {key: {s: json.loads((run / f"metrics_missing-{s}.json").read_text()) for s in MISSING}
               for key, run in runs.items()}
    assert result.output.count(" missing ") == 3 * len(runs)

    # The pooled target: the trainer's test set is gamma's test split then delta's (IDs prefixed), scored as
    # `fasd evaluate` scores each dataset, and the metrics are compute_metrics on that concatenation at the cell's
    # own validation threshold.
    registry = load_registry(mm_config)
    pooled = "alpha+beta-to-gamma+delta"
    assert metrics[pooled]["target"] == "gamma+delta" and metrics[pooled]["sources"] == ["alpha", "beta"]
    parts = [open_source(registry.dataset(name)) for name in ("gamma", "delta")]
    tests = [p.table.rows_in_splits(["test"]) for p in parts]
    ids = np.loadtxt(runs[pooled] / "scores.csv", delimiter=",", skiprows=1, usecols=0, dtype=str)
    assert list(ids) == [f"{p.name}/{f}" for p, r in zip(parts, tests) for f in p.table.frame_id[r]]
    scores = _scores(runs[pooled] / "scores.csv")
    separately = []
    for name in ("gamma", "delta"):
        result = fasd("evaluate", runs[pooled] / "best.pt", "--dataset", name, "--config", mm_config, "--scores",
                      tmp_path / f"{name}.csv")
        assert result.exit_code == 0, result.output
        separately.append(_scores(tmp_path / f"{name}.csv"))
    np.testing.assert_allclose(scores, np.concatenate(separately), atol=1e-6)  # batches differ: float noise
    labels = np.concatenate([p.table.label[r] for p, r in zip(parts, tests)])
    attacks = np.concatenate([p.table.attack_type[r] for p, r in zip(parts, tests)])
    expected = compute_metrics(labels, scores, attacks, val_threshold=metrics[pooled]["threshold"]["val"])
    assert {key: metrics[pooled][key] for key in expected} == expected

    # Protocol 2: each saved setting is exactly what `fasd evaluate --missing` prints for the cell's checkpoint.
    for setting, modalities in MISSING.items():
        result = fasd("evaluate", runs["holdout-delta"] / "best.pt", "--split", "holdout-delta", "--config", mm_config,
                      "--missing", ",".join(modalities), "--json")
        assert result.exit_code == 0, result.output
        assert {k: v for k, v in missing["holdout-delta"][setting].items() if k != "missing"} == _json(result.stdout)
        assert missing["holdout-delta"][setting]["missing"] == list(modalities)
    result = fasd("evaluate", runs[pooled] / "best.pt", "--split", "alpha,beta-to-gamma,delta", "--config", mm_config,
                  "--missing", "depth,ir", "--json")  # evaluate takes the pooled protocol too
    assert result.exit_code == 0, result.output
    assert {k: v for k, v in missing[pooled]["depth+ir"].items() if k != "missing"} == _json(result.stdout)

    # Resumable: a re-run trains nothing and evaluates only the setting whose file was removed.
    (runs["holdout-delta"] / "metrics_missing-ir.json").unlink()
    result = fasd(*args)
    assert result.exit_code == 0, result.output
    assert result.output.count("] skip") == len(runs) and result.output.count(" missing ") == 1
    assert json.loads((runs["holdout-delta"] / "metrics_missing-ir.json").read_text()) == \
        missing["holdout-delta"]["ir"]

    # The three tables, filled from those files (one seed: the value alone).
    text = (out / "tables.md").read_text()
    pct = lambda value: f"{100 * value:.2f}"  # noqa: E731
    method = "fasd no teacher (CE only)"
    full, holdout = metrics["holdout-delta"], missing["holdout-delta"]
    row = next(line for line in text.splitlines() if line.startswith(f"| {method} | 1 | "))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[2:4] == [pct(full["at_eer"]["acer"]), pct(full["auc"])]  # Table 1: →delta, first column
    assert "| Protocol 1: method | seeds | →delta HTER (%) | →delta AUC (%) | →W HTER (%) |" in text
    table2_row = [method, "1", *(v for s in MISSING for v in
                                                     (pct(holdout[s]["at_eer"]["acer"]), pct(holdout[s]["auc"])))]
    assert "| " + " | ".join(table2_row) + " | " in text
    pooled_row = [method, "1", pct(metrics[pooled]["at_eer"]["acer"]), pct(metrics[pooled]["auc"])]
    assert "| Protocol 3: method | seeds | alpha+beta → gamma+delta HTER (%) |" in text
    assert "| " + " | ".join(pooled_row) + " |" in text
    assert f"| holdout-delta | {method} | depth | 1 | {pct(holdout['depth']['hter'])} |" in text
    assert "Table 5: loss components" not in text  # mmda groups are not paper A's tables
    header = (out / "results.csv").read_text().splitlines()[0].split(",")
    assert {missing_metric("acer_at_eer", s) for s in MISSING} <= set(header)
