"""report.md and its figures (acer.png, roc.png) for ``fasd demo``, from the summary alone plus score curves."""

from __future__ import annotations

from pathlib import Path

from fasd.demo.stats import PAPER_A_DELTA_PP, PAPER_A_STD_RATIO
from fasd.evaluate.plots import plot_grouped_bars, plot_roc_panels

# Report columns: (title, path into a metrics object, drawn in the bar chart). ACER_ISO (worst attack
# type's APCER) appears where the metrics object provides it.
COLUMNS = (("ACER@EER", ("at_eer", "acer"), True), ("ACER_ISO", ("acer_iso",), True),
           ("ACER_ISO", ("at_eer", "acer_iso"), True), ("HTER", ("hter",), True), ("EER", ("eer",), False),
           ("AUC", ("auc",), False))
NAMES = {"teacher": "teacher", "distilled": "student, distilled", "no_teacher": "student, no teacher"}


def _at(metrics: dict, path: tuple[str, ...]):
    for key in path:
        if not isinstance(metrics, dict) or key not in metrics:
            return None
        metrics = metrics[key]
    return metrics if isinstance(metrics, (int, float)) else None


def _columns(summary: dict) -> list[tuple[str, tuple[str, ...], bool]]:
    return [c for c in COLUMNS if _at(summary["teacher"], c[1]) is not None
            or _at(summary["distilled"]["mean"], c[1]) is not None]


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


def _cell(summary: dict, key: str, path: tuple[str, ...]) -> str:
    if key == "teacher":
        return _pct(_at(summary["teacher"], path))
    mean, std = _at(summary[key]["mean"], path), _at(summary[key]["std"], path)
    return _pct(mean) if std is None else f"{_pct(mean)} ± {100 * std:.2f}"


def teacher_check(summary: dict) -> str:
    """Whether the teacher beats both students' mean held-out ACER, in words."""
    teacher = summary["teacher"]["at_eer"]["acer"]
    means = [summary[key]["mean"]["at_eer"]["acer"] for key in ("distilled", "no_teacher")]
    if teacher is None or None in means:
        return "The teacher's or a student's held-out ACER is undefined."
    listed = f"{_pct(teacher)} % vs the students' means {_pct(means[0])} % (distilled) and {_pct(means[1])} % " \
             f"(no teacher)"
    if teacher < min(means):
        return f"The teacher is better than both students on the held-out domain: ACER@EER {listed}."
    return (f"The teacher is NOT better than both students on the held-out domain (ACER@EER {listed}), so this "
            f"run cannot show what a teacher that knows more of the world buys.")


def _plots(out: Path, summary: dict, teacher_curve: tuple, curves: dict[str, list]) -> None:
    seeds = len(summary["distilled"]["seeds"])
    groups = {}
    for title, path, drawn in _columns(summary):
        if not drawn:
            continue
        row = {NAMES["teacher"]: 100 * _at(summary["teacher"], path)} if _at(summary["teacher"], path) is not None \
            else {}
        for key in ("distilled", "no_teacher"):
            mean, std = _at(summary[key]["mean"], path), _at(summary[key]["std"], path)
            if mean is not None:
                row[NAMES[key]] = (100 * mean, None if std is None else 100 * std)
        groups[title] = row
    plot_grouped_bars(groups, out / "acer.png",
                      f"held-out {summary['target']}: error rates, students mean ± std over {seeds} seed(s)",
                      "error rate (%, lower is better)")
    plot_roc_panels({NAMES["teacher"]: [teacher_curve], **{NAMES[k]: v for k, v in curves.items()}},
                    out / "roc.png", f"ROC on held-out {summary['target']} (test split)")


def write_report(out: Path, summary: dict, recipe_title: str, teacher_curve: tuple, curves: dict[str, list]) -> Path:
    """Write report.md, acer.png and roc.png into ``out``."""
    _plots(out, summary, teacher_curve, curves)
    saw = summary["teacher_saw"]
    columns = _columns(summary)
    test = summary["teacher"]
    seeds = [run["seed"] for run in summary["distilled"]["seeds"]]
    comparison = summary["comparison"]
    delta, ratio = comparison["delta_acer_pp"], comparison["std_ratio"]
    lines = [
        f"# fasd demo — {summary['protocol']} ({summary['recipe']})",
        "",
        f"Synthetic data. Students — {recipe_title} — train on **{' + '.join(summary['sources'])}** only, seeds "
        f"{', '.join(map(str, seeds))} each, with the teacher and without it (`--no-teacher`, same budget), and "
        f"are tested on the held-out **{summary['target']}** test split ({test['n']} frames: {test['n_live']} "
        f"live, {test['n_spoof']} spoof).",
        "",
        f"The teacher — {saw['model']} — saw more of the world than the students: it was trained on "
        f"**{', '.join(saw['domains'])}** ({', '.join(f'{d} {n}' for d, n in saw['train_frames'].items())} train "
        f"frames; {saw['epochs']} epoch(s) of {saw['draws_per_epoch']} draws) and never on {summary['target']}. "
        f"{teacher_check(summary)}",
        "",
        f"**Verdict:** {comparison['verdict']}",
        "",
        "| model | " + " | ".join(f"{title} %" for title, _p, _d in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for key, name in NAMES.items():
        label = name if key == "teacher" else f"{name} (mean ± std, {len(seeds)} seeds)"
        lines.append(f"| {label} | " + " | ".join(_cell(summary, key, p) for _t, p, _d in columns) + " |")
    lines += [
        "",
        f"Distilled minus no-teacher mean held-out ACER@EER: "
        f"**{'n/a' if delta is None else f'{delta:+.2f} pp'}** (paper A: {PAPER_A_DELTA_PP[0]:.0f} to "
        f"{PAPER_A_DELTA_PP[1]:.0f} pp); no-teacher std / distilled std: "
        f"**{'n/a' if ratio is None else f'{ratio:.2f}x'}** (paper A: about {PAPER_A_STD_RATIO:.0f}x).",
        "",
        "| seed | distilled ACER@EER % | no teacher ACER@EER % | distilled AUC % | no teacher AUC % |",
        "|---|---|---|---|---|",
    ]
    for d, p in zip(summary["distilled"]["seeds"], summary["no_teacher"]["seeds"]):
        lines.append(f"| {d['seed']} | {_pct(d['at_eer']['acer'])} | {_pct(p['at_eer']['acer'])} | "
                     f"{_pct(d['auc'])} | {_pct(p['auc'])} |")
    gap = summary["distilled_in_domain"]
    onnx = summary["onnx"]
    stages = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in summary["stage_seconds"].items())
    lines += [
        "",
        f"In-domain ({' + '.join(summary['sources'])} test splits) the distilled student of seed {seeds[0]} reaches "
        f"ACER@EER {_pct(gap['at_eer']['acer'])} % vs {_pct(summary['distilled']['seeds'][0]['at_eer']['acer'])} % "
        f"held out — the domain gap the held-out protocol measures.",
        "",
        f"ONNX student (seed {seeds[0]}): {onnx['bytes'] / 1e6:.2f} MB, ONNX Runtime batch-1 latency median "
        f"{onnx['median_ms']:.2f} ms, p95 {onnx['p95_ms']:.2f} ms on {onnx['cpu']}.",
        "",
        "![error rates](acer.png)",
        "",
        "![ROC](roc.png)",
        "",
        f"Total time: {summary['seconds']:.0f} s of stage work ({stages}).",
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
