"""``fasd demo``: the whole system, for real, on synthetic data, on a laptop CPU, in minutes.

synth (3 domains) -> fine-tune a tiny CLIP teacher on the two source domains -> cache it for all three ->
train the student on holdout-<third> with distillation and with --no-teacher (same seed, same budget) ->
evaluate both (and the teacher) on the held-out domain -> export the distilled student to ONNX and bench
it -> report.md (tables, ACER bar chart, ROC curves) and summary.json. Every stage is skipped or resumed
when its output already exists, so a second run reuses what is done.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fasd.config import load_registry
from fasd.data.open_source import open_source
from fasd.data.synth import DOMAIN_NAMES, synthesize
from fasd.evaluate.metrics import compute_metrics
from fasd.evaluate.plots import plot_bars, plot_roc
from fasd.evaluate.scoring import metrics_for, score_rows
from fasd.export.latency import bench_onnx
from fasd.export.onnx_export import export_onnx
from fasd.export.onnx_model import load_scorer
from fasd.evaluate.store_metrics import p_live
from fasd.store_schema.reader import load_targets
from fasd.store_schema.store import open_store
from fasd.student_train.run_config import TrainOptions
from fasd.student_train.trainer import Trainer
from fasd.teacher_cache.arch import TINY_ARCH
from fasd.teacher_cache.finetune import finetune_teacher
from fasd.teacher_cache.job import CacheOptions, run_cache
from fasd.teacher_cache.prompts import default_prompts
from fasd.teacher_cache.registry import TeacherOptions, load_teacher


@dataclass
class DemoBudget:
    """Sizes of every stage; the defaults took 5 min 8 s on a 2-core CPU (docs/benchmarks.md)."""

    frames: int = 1500  # per domain
    size: int = 112
    teacher_epochs: int = 8
    student_epochs: int = 10
    max_draws: int = 1536
    batch_size: int = 64
    bench_runs: int = 300
    seed: int = 0


def _stage(log, name: str, began: float) -> None:
    log(f"[demo {time.perf_counter() - began:6.1f}s] {name}")


def _train(registry, config: Path, store: Path, run_dir: Path, protocol, budget: DemoBudget, no_teacher: bool,
           progress: bool) -> dict:
    if (run_dir / "metrics.json").is_file():
        return json.loads((run_dir / "metrics.json").read_text())
    options = TrainOptions(protocol=protocol.name, sources=list(protocol.sources), target=protocol.target,
                           config=str(config), store=None if no_teacher else str(store),
                           epochs=budget.student_epochs, batch_size=budget.batch_size, max_draws=budget.max_draws,
                           no_teacher=no_teacher, seed=budget.seed)
    trainer = Trainer(registry, options, run_dir, progress=progress)
    return trainer.run(resume=(run_dir / "last.pt").is_file())


def run_demo(out: Path, budget: DemoBudget | None = None, progress: bool = True, log=print) -> dict:
    budget = budget or DemoBudget()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    config = out / "data" / "fasd.toml"
    if not config.is_file():
        _stage(log, f"synth: 3 domains x {budget.frames} frames", began)
        synthesize(out / "data", domains=3, frames=budget.frames, size=budget.size, seed=budget.seed,
                   progress=progress)
    registry = load_registry(config)
    sources, target = list(DOMAIN_NAMES[:2]), DOMAIN_NAMES[2]
    protocol = registry.protocol(f"holdout-{target}")

    teacher_path = out / "teacher.pt"
    if not teacher_path.is_file():
        _stage(log, f"teacher-finetune: {TINY_ARCH} on {', '.join(sources)}", began)
        finetune_teacher(config, sources, teacher_path, arch=TINY_ARCH, epochs=budget.teacher_epochs,
                         seed=budget.seed, progress=progress)

    store = out / "teacher.zarr"
    _stage(log, "cache-teacher: all three domains", began)
    loaded = load_teacher("flip-mcl", TeacherOptions(teacher_path))
    for name in registry.domains:
        run_cache(open_source(registry.dataset(name)), loaded, str(store),
                  CacheOptions(batch_size=64, chunk_rows=1024, progress=progress))

    _stage(log, f"train {protocol.name}: distilled", began)
    distilled = _train(registry, config, store, out / "runs" / "distilled", protocol, budget, False, progress)
    _stage(log, f"train {protocol.name}: no teacher (same seed, same budget)", began)
    plain = _train(registry, config, store, out / "runs" / "no_teacher", protocol, budget, True, progress)

    _stage(log, "evaluate: teacher, in-domain vs held-out", began)
    teacher_metrics, teacher_curve = _teacher_on_target(store, registry, target)
    in_domain = _in_domain(out / "runs" / "distilled" / "best.pt", registry, sources, progress)

    onnx_path = out / "student.onnx"
    if not onnx_path.is_file():
        _stage(log, "export + bench the distilled student", began)
        export = export_onnx(out / "runs" / "distilled" / "best.pt", onnx_path)
        log(export.format())
    latency = bench_onnx(onnx_path, runs=budget.bench_runs, warmup=max(10, budget.bench_runs // 10), batch=1,
                         progress=progress)

    summary = {
        "protocol": protocol.name,
        "teacher": teacher_metrics,
        "distilled": distilled,
        "no_teacher": plain,
        "distilled_in_domain": in_domain,
        "onnx": {"bytes": onnx_path.stat().st_size, "median_ms": latency["median_ms"],
                 "p95_ms": latency["p95_ms"], "cpu": latency["cpu"]},
        "seconds": round(time.perf_counter() - began, 1),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    _write_report(out, summary, teacher_curve, target)
    _stage(log, f"done: {out / 'report.md'}", began)
    return summary


def _teacher_on_target(store_path: Path, registry, target: str) -> tuple[dict, tuple]:
    """The teacher alone on the held-out test split, from its cached logits."""
    targets = load_targets(open_store(str(store_path)), target, ("logits",))
    source = open_source(registry.dataset(target))
    rows = source.table.rows_in_splits(["test"])
    store_rows = targets.rows_for(source.table.frame_id[rows])
    scores = p_live(targets.arrays["logits"][store_rows])
    labels = source.table.label[rows]
    return compute_metrics(labels, scores, source.table.attack_type[rows]), (labels, scores)


def _in_domain(checkpoint: Path, registry, sources: list[str], progress: bool) -> dict:
    """The distilled student on its sources' own test splits (the in-domain side of the gap)."""
    scorer = load_scorer(checkpoint)
    labels, scores = [], []
    for name in sources:
        source = open_source(registry.dataset(name))
        rows = source.table.rows_in_splits(["test"])
        labels.append(source.table.label[rows])
        scores.append(score_rows(scorer.p_live, source, rows, progress=progress, desc=f"in-domain {name}"))
    return compute_metrics(np.concatenate(labels), np.concatenate(scores))


def _scores_csv(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    data = np.genfromtxt(run_dir / "scores.csv", delimiter=",", skip_header=1, usecols=(1, 2))
    return data[:, 0].astype(int), data[:, 1]


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


def _write_report(out: Path, summary: dict, teacher_curve: tuple, target: str) -> None:
    rows = {"teacher (tiny CLIP, fine-tuned)": summary["teacher"], "student, distilled": summary["distilled"],
            "student, no teacher": summary["no_teacher"]}
    plot_bars({name: m["at_eer"]["acer"] * 100 for name, m in rows.items() if m["at_eer"]["acer"] is not None},
              out / "acer.png", f"held-out {target}: ACER at the EER threshold", "ACER (%)")
    plot_roc({"teacher": teacher_curve, "distilled": _scores_csv(out / "runs" / "distilled"),
              "no teacher": _scores_csv(out / "runs" / "no_teacher")}, out / "roc.png")
    winner = "distilled" if summary["distilled"]["at_eer"]["acer"] < summary["no_teacher"]["at_eer"]["acer"] \
        else "no-teacher"
    lines = [
        f"# fasd demo — {summary['protocol']}",
        "",
        f"Synthetic data, three domains; the student trains on the other two and is tested on the held-out "
        f"**{target}** test split. Same seed and budget for both students. Here the **{winner}** student has "
        f"the lower held-out ACER.",
        "",
        "| model | ACER@EER % | EER % | HTER % | ACER@0.5 % | AUC % |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in rows.items():
        lines.append(f"| {name} | {_pct(m['at_eer']['acer'])} | {_pct(m['eer'])} | {_pct(m['hter'])} | "
                     f"{_pct(m['at_0.5']['acer'])} | {_pct(m['auc'])} |")
    gap = summary["distilled_in_domain"]
    lines += [
        "",
        f"In-domain (sources' test splits) vs held-out, distilled student: ACER@EER {_pct(gap['at_eer']['acer'])} % "
        f"vs {_pct(summary['distilled']['at_eer']['acer'])} % — the domain gap the held-out protocol measures.",
        "",
        f"ONNX student: {summary['onnx']['bytes'] / 1e6:.2f} MB, ONNX Runtime batch-1 latency median "
        f"{summary['onnx']['median_ms']:.2f} ms, p95 {summary['onnx']['p95_ms']:.2f} ms on {summary['onnx']['cpu']}.",
        "",
        "![ACER](acer.png)",
        "![ROC](roc.png)",
        "",
        f"Total time: {summary['seconds']:.0f} s.",
    ]
    (out / "report.md").write_text("\n".join(lines) + "\n")
