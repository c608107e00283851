"""Collect the finished runs of an experiment folder and summarise each group of seeds.

A group is one (protocol, store, ablation) over its seeds; the paper reports mean ± sample standard
deviation (ddof = 1) of each metric; a single seed has no standard deviation. Rates stay fractions here
(as in metrics.json); tables.md shows them in %. The ISO/IEC 30107-3 ACER columns (worst attack type's
APCER) are empty for runs whose target names no attack types. Runs of multimodal students add the metrics of
their missing-modality evaluations (``<metric>@missing-<setting>``, fasd.experiment.missing); results.csv and
summary.csv have those columns only when some run has them.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fasd.errors import FasdError
from fasd.experiment.missing import MISSING, missing_file
from fasd.experiment.plan import ABLATIONS, DEFAULT_RECIPE, METRICS_FILE

# results.csv metric columns and where each value sits in metrics.json.
METRICS: dict[str, tuple[str, ...]] = {
    "acer_at_eer": ("at_eer", "acer"),
    "eer": ("eer",),
    "hter": ("hter",),
    "acer_at_0.5": ("at_0.5", "acer"),
    "apcer_at_0.5": ("at_0.5", "apcer"),
    "bpcer_at_0.5": ("at_0.5", "bpcer"),
    "auc": ("auc",),
    "acer_iso_at_eer": ("at_eer", "acer_iso"),
    "acer_iso_at_0.5": ("at_0.5", "acer_iso"),
    # at the sources' validation threshold (intra-dataset protocols: the Dev split), the OULU-NPU table's columns
    "apcer_worst_at_val": ("at_val", "apcer_worst_type"),
    "bpcer_at_val": ("at_val", "bpcer"),
    "acer_iso_at_val": ("at_val", "acer_iso"),
}
# Keys a run holds only where attack types are known (ISO/IEC 30107-3 ACER), and rate rows it holds only when
# it was evaluated at a validation threshold: None when absent.
ISO_ONLY = frozenset({"acer_iso", "apcer_worst_type"})
OPTIONAL_ROWS = frozenset({"at_val"})
# Protocol 2: these metrics of each missing-modality setting, named by missing_metric.
MISSING_METRICS = ("acer_at_eer", "hter", "eer", "auc")


def missing_metric(metric: str, setting: str) -> str:
    return f"{metric}@missing-{setting}"


RUN_COLUMNS = ["protocol", "store", "ablation", "seed", "sources", "target"]


@dataclass(frozen=True)
class RunResult:
    protocol: str
    store: str
    ablation: str
    seed: int
    sources: tuple[str, ...]
    target: str
    best_epoch: int
    values: dict[str, float | None]
    run_dir: Path
    recipe: str = DEFAULT_RECIPE  # runs written before recipes existed are vlmkd runs

    @property
    def group(self) -> tuple[str, str, str]:
        return self.protocol, self.store, self.ablation


@dataclass(frozen=True)
class Stat:
    mean: float | None
    std: float | None  # None with fewer than two values
    n: int


@dataclass(frozen=True)
class Group:
    protocol: str
    store: str
    ablation: str
    sources: tuple[str, ...]
    target: str
    runs: tuple[RunResult, ...]
    stats: dict[str, Stat]

    @property
    def seeds(self) -> list[int]:
        return [run.seed for run in self.runs]

    @property
    def recipe(self) -> str:
        return self.runs[0].recipe


def _lookup(metrics: dict, path: tuple[str, ...]):
    *parents, last = path
    for key in parents:
        if key in OPTIONAL_ROWS and key not in metrics:
            return None
        metrics = metrics[key]
    return metrics.get(last) if last in ISO_ONLY else metrics[last]


def _missing_values(run_dir: Path) -> dict[str, float | None]:
    """Every missing-modality metric of a run: None where its setting was not evaluated."""
    values = {}
    for setting in MISSING:
        path = run_dir / missing_file(setting)
        try:
            metrics = json.loads(path.read_text()) if path.is_file() else None
            values |= {missing_metric(name, setting): None if metrics is None else _lookup(metrics, METRICS[name])
                       for name in MISSING_METRICS}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise FasdError(f"cannot read {path} ({exc.__class__.__name__}: {exc}); delete it to evaluate that "
                            f"setting again") from None
    return values


def _read_run(path: Path, runs_root: Path) -> RunResult:
    protocol, store, ablation, _ = path.parent.relative_to(runs_root).parts
    try:
        metrics = json.loads(path.read_text())
        values = {name: _lookup(metrics, where) for name, where in METRICS.items()}
        run = RunResult(protocol, store, ablation, int(metrics["seed"]), tuple(metrics["sources"]),
                        metrics["target"], int(metrics["best_epoch"]), values, path.parent,
                        metrics.get("recipe", DEFAULT_RECIPE))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FasdError(f"cannot read {path} ({exc.__class__.__name__}: {exc}); delete its run directory "
                        f"to run the cell again") from None
    values.update(_missing_values(path.parent))
    return run


def _order(run: RunResult) -> tuple:
    ablation_rank = list(ABLATIONS).index(run.ablation) if run.ablation in ABLATIONS else len(ABLATIONS)
    return run.protocol, ablation_rank, run.ablation, run.store, run.seed


def collect_runs(out: Path) -> list[RunResult]:
    """Every finished run (metrics.json) under ``out/runs/<protocol>/<store>/<ablation>/seed<k>``."""
    root = Path(out) / "runs"
    return sorted((_read_run(p, root) for p in root.glob(f"*/*/*/seed*/{METRICS_FILE}")), key=_order)


def stat(values: list[float | None]) -> Stat:
    known = [v for v in values if v is not None]
    if not known:
        return Stat(None, None, 0)
    std = float(np.std(known, ddof=1)) if len(known) > 1 else None
    return Stat(float(np.mean(known)), std, len(known))


def summarize(runs: list[RunResult]) -> dict[tuple[str, str, str], Group]:
    """Groups keyed by (protocol, store, ablation), in the order of ``runs``."""
    members: dict[tuple[str, str, str], list[RunResult]] = {}
    for run in runs:
        members.setdefault(run.group, []).append(run)
    return {key: Group(*key, group[0].sources, group[0].target, tuple(group),
                       {name: stat([r.values[name] for r in group]) for name in group[0].values})
            for key, group in members.items()}


def metric_columns(runs: list[RunResult]) -> list[str]:
    """METRICS, then the missing-modality metrics that some run has."""
    extra = [name for name in (runs[0].values if runs else {}) if name not in METRICS]
    return [*METRICS, *(name for name in extra if any(run.values[name] is not None for run in runs))]


def _cell(value) -> object:
    return "" if value is None else value


def write_results(runs: list[RunResult], path: Path) -> Path:
    """results.csv: one row per finished run."""
    columns = metric_columns(runs)
    with open(path, "w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow([*RUN_COLUMNS, *columns, "best_epoch", "run_dir"])
        for run in runs:
            out.writerow([run.protocol, run.store, run.ablation, run.seed, "+".join(run.sources), run.target,
                          *(_cell(run.values[name]) for name in columns), run.best_epoch, run.run_dir])
    return path


def write_summary(groups: dict[tuple[str, str, str], Group], path: Path) -> Path:
    """summary.csv: one row per group, mean and sample std (ddof = 1) of every metric."""
    columns = metric_columns([run for group in groups.values() for run in group.runs])
    stat_columns = [f"{name}_{part}" for name in columns for part in ("mean", "std")]
    with open(path, "w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["protocol", "store", "ablation", "seeds", *stat_columns])
        for group in groups.values():
            stats = [_cell(getattr(group.stats[name], part)) for name in columns for part in ("mean", "std")]
            out.writerow([group.protocol, group.store, group.ablation,
                          " ".join(map(str, group.seeds)), *stats])
    return path
