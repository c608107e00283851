"""Experiment plots (PNG): ACER per protocol with values and error bars, and the ROC curves of a group's seeds."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from fasd.evaluate.plots import plot_bars, plot_roc_panels
from fasd.experiment.aggregate import Group, Stat
from fasd.experiment.references import references_for
from fasd.experiment.tables import LABELS

SCORES_FILE = "scores.csv"


def _bar(stat: Stat) -> float | tuple[float, float]:
    """Percent, with the std over seeds where there is one."""
    return 100 * stat.mean if stat.std is None else (100 * stat.mean, 100 * stat.std)


def _shared_reference(references: dict[str, float], protocols: list[str]) -> tuple[str, float] | None:
    """The first reference that applies to every plotted protocol with one value (one dashed line)."""
    first, *rest = (references_for(references, p) for p in protocols)
    return next((ref for ref in first if all(ref in other for other in rest)), None)


def acer_plots(groups: list[Group], references: dict[str, float], folder: Path) -> list[Path]:
    """One bar chart per (store, ablation): ACER per protocol, mean ± std over seeds (the paper's Figure 2)."""
    paths = []
    for store, ablation in dict.fromkeys((g.store, g.ablation) for g in groups):
        members = [g for g in groups if (g.store, g.ablation) == (store, ablation)
                   and g.stats["acer_at_eer"].mean is not None]
        if not members:
            continue
        reference = _shared_reference(references, [g.protocol for g in members])
        title = f"ACER at EER threshold: {LABELS.get(ablation, ablation)} [{store}]"
        if reference is not None:
            title += f"\n(dashed: {reference[0]} {reference[1]:.2f})"
        paths.append(plot_bars({g.protocol: _bar(g.stats["acer_at_eer"]) for g in members},
                               folder / f"acer_{store}_{ablation}.png", title, "ACER (%)",
                               reference=None if reference is None else reference[1]))
    return paths


def read_scores(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(labels, P(live) scores) of a run's scores.csv."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return (np.array([int(r["label"]) for r in rows], dtype=np.int64),
            np.array([float(r["score"]) for r in rows], dtype=np.float64))


def roc_plots(groups: list[Group], folder: Path) -> list[Path]:
    """One titled ROC figure per group, a thin curve per seed (seeds whose test split has both classes)."""
    paths = []
    for group in groups:
        curves = [read_scores(run.run_dir / SCORES_FILE) for run in group.runs
                  if run.values["auc"] is not None and (run.run_dir / SCORES_FILE).is_file()]
        if curves:
            label = LABELS.get(group.ablation, group.ablation)
            paths.append(plot_roc_panels({label: curves},
                                         folder / f"roc_{group.protocol}_{group.store}_{group.ablation}.png",
                                         f"ROC on {group.protocol} [{group.store}]"))
    return paths
