"""report.md and its figures (acer.png, roc.png; per missing-modality setting acer-missing-<m>.png, roc-missing-<m>.png)
for ``fasd demo``, from the summary alone plus score curves; and the lines the command prints."""

from __future__ import annotations

from pathlib import Path

from fasd.demo.heldout import setting_suffix, setting_title
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


def _columns(block: dict) -> list[tuple[str, tuple[str, ...], bool]]:
    return [c for c in COLUMNS if _at(block["teacher"], c[1]) is not None
            or _at(block["distilled"]["mean"], c[1]) is not None]


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


def _cell(block: dict, key: str, path: tuple[str, ...]) -> str:
    if key == "teacher":
        return _pct(_at(block["teacher"], path))
    mean, std = _at(block[key]["mean"], path), _at(block[key]["std"], path)
    return _pct(mean) if std is None else f"{_pct(mean)} ± {100 * std:.2f}"


def settings(summary: dict) -> list[tuple[tuple[str, ...], dict]]:
    """The held-out settings of a demo, (missing modalities, block), every modality present first; a block
    holds teacher, distilled, no_teacher and comparison."""
    return [((), summary), *((tuple(block["missing"]), block) for block in summary.get("missing", {}).values())]


def teacher_check(block: dict) -> str:
    """Whether the teacher beats both students' mean held-out ACER, in words."""
    teacher = block["teacher"]["at_eer"]["acer"]
    means = [block[key]["mean"]["at_eer"]["acer"] for key in ("distilled", "no_teacher")]
    if teacher is None or None in means:
        return "The teacher's or a student's held-out ACER is undefined."
    listed = f"{_pct(teacher)} % vs the students' means {_pct(means[0])} % (distilled) and {_pct(means[1])} % " \
             f"(no teacher)"
    if teacher < min(means):
        return f"The teacher is better than both students on the held-out domain: ACER@EER {listed}."
    return (f"The teacher is NOT better than both students on the held-out domain (ACER@EER {listed}), so this "
            f"run cannot show what a teacher that knows more of the world buys.")


TESTABLE_TEACHER = 0.10  # the teacher's held-out ACER@EER at most this ...
TESTABLE_GAP = 0.15  # ... and the no-teacher student's mean at least this much worse: room for paper A's effect


def testable_check(block: dict) -> str:
    """Whether this run can test paper A's claim: a teacher that is good where the students have never been
    (ACER@EER ≤ 10 %) and a no-teacher student at least 15 pp worse there, in words."""
    teacher, plain = block["teacher"]["at_eer"]["acer"], block["no_teacher"]["mean"]["at_eer"]["acer"]
    paper = block["comparison"].get("paper")
    claim = f"{paper['name']}'s claim" if paper else "whether the teacher helps"
    if teacher is None or plain is None:
        return f"Whether this run can test {claim} is unknown: an ACER is undefined."
    numbers = (f"teacher {_pct(teacher)} % (needs ≤ {100 * TESTABLE_TEACHER:.0f} %), no-teacher mean "
               f"{_pct(plain)} % = teacher {100 * (plain - teacher):+.2f} pp (needs ≥ +{100 * TESTABLE_GAP:.0f} pp)")
    if teacher <= TESTABLE_TEACHER and plain - teacher >= TESTABLE_GAP:
        return f"This run can test {claim} — the teacher knows what the students cannot see: {numbers}."
    return f"This run can NOT test {claim} (the teacher knows too little more than the students): {numbers}."


def _interval(values: list[float] | None, fmt: str) -> str:
    return "no interval" if values is None else f"[{format(values[0], fmt)}, {format(values[1], fmt)}]"


def missing_cost(block: dict, full: dict, title: str) -> str:
    """How much each model's held-out ACER@EER moves from every modality present to ``block``'s setting."""
    parts = []
    for key, name in NAMES.items():
        now, before = (_at(b["teacher"] if key == "teacher" else b[key]["mean"], ("at_eer", "acer"))
                       for b in (block, full))
        change = "n/a" if now is None or before is None else f"{100 * (now - before):+.2f} pp"
        parts.append(f"{name}{'' if key == 'teacher' else ' (mean)'} {change}")
    return f"From all modalities to {title}, held-out ACER@EER changes: {'; '.join(parts)}."


def _plots(out: Path, block: dict, target: str, title: str, suffix: str, teacher_curve: tuple,
           curves: dict[str, list]) -> None:
    seeds = len(block["distilled"]["seeds"])
    groups = {}
    for column, path, drawn in _columns(block):
        if not drawn:
            continue
        row = {NAMES["teacher"]: 100 * _at(block["teacher"], path)} if _at(block["teacher"], path) is not None \
            else {}
        for key in ("distilled", "no_teacher"):
            mean, std = _at(block[key]["mean"], path), _at(block[key]["std"], path)
            if mean is not None:
                row[NAMES[key]] = (100 * mean, None if std is None else 100 * std)
        groups[column] = row
    where = f"held-out {target}" + (f", {title}" if title else "")
    plot_grouped_bars(groups, out / f"acer{suffix}.png",
                      f"{where}: error rates, students mean ± std over {seeds} seed(s)",
                      "error rate (%, lower is better)")
    plot_roc_panels({NAMES["teacher"]: [teacher_curve], **{NAMES[k]: v for k, v in curves.items()}},
                    out / f"roc{suffix}.png", f"ROC on {where} (test split)")


def _setting_lines(block: dict, title: str, suffix: str) -> list[str]:
    """One held-out setting's section: teacher check, verdict, tables, Δ and std ratio, figures."""
    columns = _columns(block)
    seeds = len(block["distilled"]["seeds"])
    comparison = block["comparison"]
    delta, ratio, paper = comparison["delta_acer_pp"], comparison["std_ratio"], comparison.get("paper")
    level = f"{round(100 * comparison.get('ci_level', 0.95))} %"
    lines = [
        teacher_check(block),
        "",
        testable_check(block),
        "",
        f"**Verdict:** {comparison['verdict']}",
        "",
        "| model | " + " | ".join(f"{column} %" for column, _p, _d in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for key, name in NAMES.items():
        label = name if key == "teacher" else f"{name} (mean ± std, {seeds} seeds)"
        lines.append(f"| {label} | " + " | ".join(_cell(block, key, p) for _t, p, _d in columns) + " |")
    lines += [
        "",
        f"Distilled minus no-teacher mean held-out ACER@EER: "
        f"**{'n/a' if delta is None else f'{delta:+.2f} pp'}**, {level} CI "
        f"{_interval(comparison['delta_ci'], '+.2f')} pp (Welch t-interval over seeds"
        + (f"; {paper['name']}: {paper['delta_pp'][0]:.0f} to {paper['delta_pp'][1]:.0f} pp" if paper else "")
        + f"); no-teacher std / distilled std: **{'n/a' if ratio is None else f'{ratio:.2f}x'}**, {level} CI "
        f"{_interval(comparison['std_ratio_ci'], '.2f')} (F-interval"
        + (f"; {paper['name']}: about {paper['std_ratio']:.0f}x" if paper else "") + ").",
        "",
        "| seed | distilled ACER@EER % | no teacher ACER@EER % | distilled AUC % | no teacher AUC % |",
        "|---|---|---|---|---|",
    ]
    for d, p in zip(block["distilled"]["seeds"], block["no_teacher"]["seeds"]):
        lines.append(f"| {d['seed']} | {_pct(d['at_eer']['acer'])} | {_pct(p['at_eer']['acer'])} | "
                     f"{_pct(d['auc'])} | {_pct(p['auc'])} |")
    return lines + ["", f"![error rates{f', {title}' if title else ''}](acer{suffix}.png)", "",
                    f"![ROC{f', {title}' if title else ''}](roc{suffix}.png)", ""]


# How a missing-modality setting is scored (fasd.demo.heldout), in the report.
MISSING_METHOD = ("Students: the missing modality is the all-zero image (as `fasd evaluate --missing` feeds it), "
                  "metrics at each student's own validation threshold. Teacher: the same test frames with that "
                  "modality zeroed and masked out, run through the cached teacher module (the store holds its "
                  "targets with every modality present).")


def write_report(out: Path, summary: dict, recipe_title: str, curves: dict[tuple[str, ...], tuple]) -> Path:
    """Write report.md and, per held-out setting, acer[-missing-...].png and roc[-missing-...].png into ``out``.
    ``curves``: missing modalities -> (the teacher's (labels, scores), {student key: [(labels, scores)] per seed})."""
    saw = summary["teacher_saw"]
    test = summary["teacher"]
    seeds = [run["seed"] for run in summary["distilled"]["seeds"]]
    modalities = tuple(summary["modalities"])
    lines = [
        f"# fasd demo — {summary['protocol']} ({summary['recipe']})",
        "",
        f"Synthetic data ({', '.join(modalities)}). Students — {recipe_title} — train on "
        f"**{' + '.join(summary['sources'])}** only, seeds {', '.join(map(str, seeds))} each, with the teacher and "
        f"without it (`--no-teacher`, same budget), and are tested on the held-out **{summary['target']}** test "
        f"split ({test['n']} frames: {test['n_live']} live, {test['n_spoof']} spoof).",
        "",
        f"The teacher — {saw['model']} — saw more of the world than the students: it was trained on "
        f"**{', '.join(saw['domains'])}** ({', '.join(f'{d} {n}' for d, n in saw['train_frames'].items())} train "
        f"frames; {saw['epochs']} epoch(s) of {saw['draws_per_epoch']} draws) and never on {summary['target']}.",
        "",
    ]
    if summary.get("budget_note"):
        lines += [f"**This recipe's budget:** {summary['budget_note']}", ""]
    for missing, block in settings(summary):
        title = setting_title(missing, modalities)
        suffix = setting_suffix(missing)
        teacher_curve, student_curves = curves[missing]
        _plots(out, block, summary["target"], title, suffix, teacher_curve, student_curves)
        if title:
            lines += [f"## Held-out {summary['target']}, {title}", ""]
        if missing:
            lines += [MISSING_METHOD, "", missing_cost(block, summary, title), ""]
        lines += _setting_lines(block, title, suffix)
    gap = summary["distilled_in_domain"]
    onnx = summary["onnx"]
    stages = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in summary["stage_seconds"].items())
    inside, outside = gap["at_eer"]["acer"], summary["distilled"]["seeds"][0]["at_eer"]["acer"]
    shown = ("the domain gap the held-out protocol measures" if None not in (inside, outside) and inside < outside
             else "no domain gap shows in this run")
    lines += [
        f"In-domain ({' + '.join(summary['sources'])} test splits) the distilled student of seed {seeds[0]} reaches "
        f"ACER@EER {_pct(inside)} % vs {_pct(outside)} % held out{' (all modalities)' if len(modalities) > 1 else ''}"
        f" — {shown}.",
        "",
        f"ONNX student (seed {seeds[0]}): {onnx['bytes'] / 1e6:.2f} MB, ONNX Runtime batch-1 latency median "
        f"{onnx['median_ms']:.2f} ms, p95 {onnx['p95_ms']:.2f} ms on {onnx['cpu']}.",
        "",
        f"Total time: {summary['seconds']:.0f} s of stage work ({stages}).",
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _acer_text(block: dict, key: str) -> str:
    return f"{_cell(block, key, ('at_eer', 'acer'))} %"


def summary_lines(summary: dict) -> list[str]:
    """What ``fasd demo`` prints at the end: per held-out setting, the three models' ACER@EER and the verdict;
    then the ONNX student."""
    lines = []
    for missing, block in settings(summary):
        title = setting_title(missing, tuple(summary["modalities"]))
        lines += [f"held-out ACER@EER{f', {title}' if title else ''}: teacher {_acer_text(block, 'teacher')}, "
                  f"distilled {_acer_text(block, 'distilled')}, no teacher {_acer_text(block, 'no_teacher')}",
                  f"  {block['comparison']['verdict']}"]
    onnx = summary["onnx"]
    return lines + [f"ONNX student: {onnx['bytes'] / 1e6:.2f} MB, {onnx['median_ms']:.2f} ms median"]
