"""PNG plots for reports: bar charts with values and error bars, and ROC curves (one panel per model).

Figures are drawn with matplotlib's object API on an Agg canvas, never through pyplot,
so no display or global backend setting is needed and nothing leaks between calls.
Long tick labels are wrapped onto several lines rather than rotated, so they never overlap.
"""

from __future__ import annotations

import statistics
import textwrap
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fasd.evaluate.metrics import auc, roc_curve

Bar = float | tuple[float, float | None]  # a value, or (mean, std) over seeds (std None: one seed)
Curve = tuple[np.ndarray, np.ndarray]  # (labels, P(live) scores)
LABEL_WIDTH = 16  # characters per tick-label line


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=120)
    return path


def _mean_std(value: Bar) -> tuple[float, float | None]:
    return value if isinstance(value, tuple) else (value, None)


def _value_text(mean: float, std: float | None) -> str:
    return f"{mean:.1f}" if std is None else f"{mean:.1f}\n±{std:.1f}"


def plot_grouped_bars(groups: dict[str, dict[str, Bar]], path: str | Path, title: str, ylabel: str,
                      reference: float | None = None, reference_label: str = "reference") -> Path:
    """Bars of ``{group: {series: value or (mean, std)}}``: one cluster per group, one colour per series.

    Each bar carries its value (and ± std) as text above its error bar; ``reference`` draws a dashed
    horizontal line. A series that has no value in a group leaves a gap there.
    """
    series = list(dict.fromkeys(name for values in groups.values() for name in values))
    width = 0.8 / max(1, len(series))
    x = np.arange(len(groups))
    fig = Figure(figsize=(max(4.5, 1.0 + len(groups) * (0.6 + 0.55 * len(series))), 4.6))
    ax = fig.add_subplot()
    top = 0.0
    for index, name in enumerate(series):
        cells = [(i, _mean_std(values[name])) for i, values in enumerate(groups.values())
                 if values.get(name) is not None]
        if not cells:
            continue
        pos = x[[i for i, _ in cells]] + (index - (len(series) - 1) / 2) * width
        means = [m for _, (m, _s) in cells]
        stds = [s or 0.0 for _, (_m, s) in cells]
        bars = ax.bar(pos, means, width * 0.92, yerr=stds if any(stds) else None, capsize=3,
                      label=name if len(series) > 1 else None, color=f"C{index}")
        for bar, (mean, std) in zip(bars, (ms for _, ms in cells)):
            height = mean + (std or 0.0)
            top = max(top, height)
            ax.annotate(_value_text(mean, std), (bar.get_x() + bar.get_width() / 2, height),
                        xytext=(0, 2), textcoords="offset points", ha="center", va="bottom", fontsize=7)
    if reference is not None:
        ax.axhline(reference, color="tab:red", linestyle="--", linewidth=1.2, label=reference_label)
        top = max(top, reference)
    ax.set_ylim(0, top * 1.25 if top > 0 else 1)
    ax.set_xticks(x, [textwrap.fill(name, LABEL_WIDTH) for name in groups], fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel)
    if len(series) > 1 or reference is not None:
        ax.legend(loc="upper left", fontsize="small", frameon=False, ncols=min(3, len(series) + 1))
    fig.tight_layout()
    return _save(fig, path)


def plot_bars(values: dict[str, Bar], path: str | Path, title: str, ylabel: str,
              reference: float | None = None) -> Path:
    """Bar chart of ``name: value`` or ``name: (mean, std)`` (std drawn as an error bar, values printed)."""
    return plot_grouped_bars({name: {"": value} for name, value in values.items()}, path, title, ylabel,
                             reference=reference)


def _roc_axes(ax) -> None:
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("APCER (attacks accepted)")
    ax.set_aspect("equal")


def plot_roc(curves: dict[str, Curve], path: str | Path, title: str = "ROC") -> Path:
    """ROC curves (APCER vs 1 - BPCER) in one panel, one per ``name: (labels, scores)``, AUC in the legend."""
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    _roc_axes(ax)
    for name, (labels, scores) in curves.items():
        fpr, tpr, _ = roc_curve(labels, scores)
        ax.plot(fpr, tpr, label=f"{name} (AUC {100 * auc(labels, scores):.2f}%)")
    ax.set_ylabel("1 - BPCER (live accepted)")
    ax.set_title(title, fontsize=10)
    if curves:
        ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    return _save(fig, path)


def plot_roc_panels(panels: dict[str, list[Curve]], path: str | Path, title: str) -> Path:
    """One ROC panel per model, each seed's curve a thin line; the panel title gives AUC mean ± std."""
    fig = Figure(figsize=(3.6 * max(1, len(panels)), 4.2))
    axes = fig.subplots(1, max(1, len(panels)), squeeze=False)[0]
    for index, (ax, (name, curves)) in enumerate(zip(axes, panels.items())):
        _roc_axes(ax)
        aucs = [100 * auc(labels, scores) for labels, scores in curves]
        for labels, scores in curves:
            fpr, tpr, _ = roc_curve(labels, scores)
            ax.plot(fpr, tpr, color=f"C{index}", linewidth=1.0 if len(curves) > 1 else 1.6, alpha=0.8)
        spread = f" ± {statistics.stdev(aucs):.1f}" if len(aucs) > 1 else ""
        runs = f"{len(curves)} seeds" if len(curves) > 1 else "1 run"
        ax.set_title(f"{name}\nAUC {statistics.fmean(aucs):.1f}{spread} % ({runs})", fontsize=9)
        if index == 0:
            ax.set_ylabel("1 - BPCER (live accepted)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
