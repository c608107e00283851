"""PNG plots for reports: ROC curves and bar charts.

Figures are drawn with matplotlib's object API on an Agg canvas, never through pyplot,
so no display or global backend setting is needed and nothing leaks between calls.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fasd.evaluate.metrics import auc, roc_curve


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=120)
    return path


def plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path) -> Path:
    """ROC curves (APCER vs 1 - BPCER), one per ``name: (labels, scores)``, AUC in the legend."""
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    for name, (labels, scores) in curves.items():
        fpr, tpr, _ = roc_curve(labels, scores)
        ax.plot(fpr, tpr, label=f"{name} (AUC {100 * auc(labels, scores):.2f}%)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("APCER (false accept rate of attacks)")
    ax.set_ylabel("1 - BPCER (live accepted)")
    ax.set_title("ROC")
    if curves:
        ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    return _save(fig, path)


def plot_bars(values: dict[str, float | tuple[float, float]], path: str | Path, title: str,
              ylabel: str, reference: float | None = None) -> Path:
    """Bar chart of ``name: value`` or ``name: (mean, std)`` (std drawn as an error bar).

    ``reference`` draws a dashed horizontal line (e.g. the teacher's or the paper's number).
    """
    names = list(values)
    means = [v[0] if isinstance(v, tuple) else v for v in values.values()]
    stds = [v[1] if isinstance(v, tuple) else 0.0 for v in values.values()]
    fig = Figure(figsize=(max(4.0, 0.8 * len(names) + 2.0), 4))
    ax = fig.add_subplot()
    x = np.arange(len(names))
    ax.bar(x, means, yerr=stds if any(stds) else None, capsize=4, color="tab:blue")
    if reference is not None:
        ax.axhline(reference, color="tab:red", linestyle="--", linewidth=1.2, label="reference")
        ax.legend(loc="best", fontsize="small")
    ax.set_xticks(x, names, rotation=30 if len(names) > 4 else 0, ha="right" if len(names) > 4 else "center")
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    fig.tight_layout()
    return _save(fig, path)
