"""``fasd demo``: the whole system, for real, on synthetic data, on a laptop CPU, in minutes.

synth (8 domains) -> the recipe's teacher, trained on every domain but the held-out target (more of the
world than the students see, as FLIP-MCL is), cached for the protocol's domains -> the student trained on
two source domains with the teacher and without it, over several seeds each -> everything evaluated on the
held-out target -> the first distilled seed exported to ONNX and benched -> report.md (tables, verdict,
bar chart, ROC panels) and summary.json. Every stage is skipped when its output exists, so a second run
reuses what is done; stage times are kept in timings.json, so the report's time is that of the real work.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fasd.config import load_registry, write_config
from fasd.data.open_source import open_source
from fasd.data.synth import DOMAIN_NAMES, synthesize
from fasd.demo.recipes import DemoContext, demo_recipe
from fasd.demo.report import write_report
from fasd.demo.stats import aggregate, std_ratio, verdict
from fasd.errors import FasdError
from fasd.evaluate.metrics import compute_metrics
from fasd.evaluate.scoring import score_rows
from fasd.evaluate.store_metrics import p_live
from fasd.export.latency import bench_model
from fasd.export.export import export_model
from fasd.experiment.figures import SCORES_FILE, read_scores
from fasd.export.runtimes import load_scorer
from fasd.store_schema.reader import load_targets
from fasd.store_schema.store import open_store
from fasd.student_train.trainer import Trainer

SOURCES = ("alpha", "beta")  # what the students train on
TARGET = "gamma"  # held out from students and teacher alike
STUDENTS = {"distilled": False, "no_teacher": True}  # summary key: --no-teacher


@dataclass
class DemoBudget:
    """Sizes of every stage (see the README's demo section for what the defaults take on 2 cores)."""

    domains: int = 8  # synthesised (all fasd synth has); the teacher sees all but the target, the students two
    frames: int = 900  # per domain
    size: int = 112
    teacher_epochs: int = 8
    teacher_draws: int = 1200  # frames per teacher epoch
    student_epochs: int = 4
    max_draws: int = 384  # frames per student epoch
    batch_size: int = 64
    seeds: int = 3  # per student
    bench_runs: int = 300
    seed: int = 0  # data and teacher


class StageClock:
    """Logs each stage and keeps its seconds in ``timings.json``; a stage skipped on a re-run keeps its time."""

    def __init__(self, path: Path, log: Callable[[str], None]):
        self.path = path
        self.log = log
        self.began = time.perf_counter()
        self.seconds: dict[str, float] = json.loads(path.read_text()) if path.is_file() else {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.log(f"[demo {time.perf_counter() - self.began:6.1f}s] {name}")
        start = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - start, 1)
        self.path.write_text(json.dumps(self.seconds, indent=2))

    @property
    def total(self) -> float:
        return round(sum(self.seconds.values()), 1)


def _demo_config(out: Path, budget: DemoBudget, clock: StageClock, progress: bool) -> Path:
    """Synthesise the domains; demo.toml registers them all with alpha, beta, gamma as protocol domains."""
    data = out / "data"
    config = data / "demo.toml"
    if not config.is_file():
        if budget.domains < 3:
            raise FasdError(f"the demo needs at least 3 domains (2 sources + 1 target), got {budget.domains}")
        with clock.stage(f"synth: {budget.domains} domains x {budget.frames} frames"):
            synthesize(data, domains=budget.domains, frames=budget.frames, size=budget.size, seed=budget.seed,
                       progress=progress)
            names = DOMAIN_NAMES[:budget.domains]
            write_config(config, {n: {"format": "hdf5", "path": f"{n}.h5"} for n in names}, [*SOURCES, TARGET])
    return config


def _train(ctx: DemoContext, recipe, seed: int, no_teacher: bool, run_dir: Path) -> dict:
    if (run_dir / "metrics.json").is_file():
        return json.loads((run_dir / "metrics.json").read_text())
    with ctx.stage(f"train {ctx.protocol.name}: {'no teacher' if no_teacher else 'distilled'}, seed {seed}"):
        trainer = Trainer(ctx.registry, recipe.student_options(ctx, seed, no_teacher), run_dir,
                          progress=ctx.progress)
        return trainer.run(resume=(run_dir / "last.pt").is_file())


def run_demo(out: Path, budget: DemoBudget | None = None, recipe: str = "vlmkd", progress: bool = True,
             log: Callable[[str], None] = print) -> dict:
    budget = budget or DemoBudget()
    chosen = demo_recipe(recipe)
    if budget.seeds < 1:
        raise FasdError(f"the demo needs at least one seed per student, got {budget.seeds}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clock = StageClock(out / "timings.json", log)
    config = _demo_config(out, budget, clock, progress)
    registry = load_registry(config)
    protocol = registry.protocol(f"holdout-{TARGET}")
    ctx = DemoContext(out=out, budget=budget, config=config, registry=registry, protocol=protocol,
                      teacher_domains=[d for d in registry.datasets if d != TARGET], store=out / "teacher.zarr",
                      progress=progress, stage=clock.stage)
    teacher_saw = chosen.teacher(ctx)

    students = {key: [_train(ctx, chosen, budget.seed + s, no_teacher, out / "runs" / key / f"seed{budget.seed + s}")
                      for s in range(budget.seeds)] for key, no_teacher in STUDENTS.items()}
    first = out / "runs" / "distilled" / f"seed{budget.seed}"
    with clock.stage("evaluate: teacher on the held-out target, distilled student in-domain"):
        teacher_metrics, teacher_curve = _teacher_on_target(ctx.store, registry, TARGET)
        in_domain = _in_domain(first / "best.pt", registry, list(protocol.sources), progress)

    onnx_path = out / "student.onnx"
    if not onnx_path.is_file():
        with clock.stage("export the distilled student (first seed) to ONNX"):
            log(export_model(first / "best.pt", onnx_path).describe())
    with clock.stage("bench the ONNX student"):
        latency = bench_model(onnx_path, runs=budget.bench_runs, warmup=max(10, budget.bench_runs // 10), batch=1,
                             progress=progress)

    keys = list(teacher_metrics)
    summary: dict = {"protocol": protocol.name, "recipe": recipe, "sources": list(protocol.sources),
                     "target": TARGET, "teacher_saw": teacher_saw, "teacher": teacher_metrics}
    for key, runs in students.items():
        mean, std = aggregate(runs, keys)
        summary[key] = {"seeds": runs, "mean": mean, "std": std}
    acer = {key: [run["at_eer"]["acer"] for run in summary[key]["seeds"]] for key in STUDENTS}
    defined = all(v is not None for values in acer.values() for v in values)
    summary["comparison"] = {
        "delta_acer_pp": (100 * (summary["distilled"]["mean"]["at_eer"]["acer"]
                                 - summary["no_teacher"]["mean"]["at_eer"]["acer"])) if defined else None,
        "std_ratio": std_ratio(summary["no_teacher"]["std"]["at_eer"]["acer"],
                               summary["distilled"]["std"]["at_eer"]["acer"]) if defined else None,
        "verdict": verdict(acer["distilled"], acer["no_teacher"]) if defined else
        "ACER is undefined for some seed (a test split without both classes), so there is no verdict.",
    }
    summary["distilled_in_domain"] = in_domain
    summary["onnx"] = {"bytes": onnx_path.stat().st_size, "median_ms": latency["median_ms"],
                       "p95_ms": latency["p95_ms"], "cpu": latency["cpu"]}
    summary["stage_seconds"] = clock.seconds
    summary["seconds"] = clock.total
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    curves = {key: [read_scores(out / "runs" / key / f"seed{budget.seed + s}" / SCORES_FILE)
                    for s in range(budget.seeds)]
              for key in STUDENTS}
    write_report(out, summary, chosen.title, teacher_curve, curves)
    log(f"[demo] done: {out / 'report.md'}")
    return summary


def _teacher_on_target(store_path: Path, registry, target: str) -> tuple[dict, tuple[np.ndarray, np.ndarray]]:
    """The teacher alone on the held-out test split, from its cached logits (every frame must be cached)."""
    targets = load_targets(open_store(str(store_path)), target, ("logits",))
    source = open_source(registry.dataset(target))
    rows = source.table.rows_in_splits(["test"])
    store_rows = targets.rows_for(source.table.frame_id[rows])
    missing = int((store_rows < 0).sum())
    if missing:
        raise FasdError(f"{store_path} lacks teacher logits for {missing} of {len(rows)} {target} test frames; "
                        f"delete it and re-run the demo to cache them again")
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
        scores.append(score_rows(scorer.p_live, source, rows, progress=progress, desc=f"in-domain {name}",
                                 size=scorer.metadata["input_size"]))
    return compute_metrics(np.concatenate(labels), np.concatenate(scores))
