"""``fasd demo``: the whole system, for real, on synthetic data, on a laptop CPU, in minutes.

synth (the recipe's domains and modalities) -> the recipe's teacher, trained on every domain but the held-out
target (more of the world than the students see, as FLIP-MCL is), cached for the protocol's domains -> the
student trained on two source domains with the teacher and without it, over several seeds each -> everything
evaluated on the held-out target, with every modality present and in each of the recipe's missing-modality
settings -> the first distilled seed exported to ONNX and benched -> report.md (tables, verdicts, bar charts, ROC
panels) and summary.json. Every stage is skipped when its output exists, so a second run reuses what is done;
stage times are kept in timings.json, so the report's time is that of the real work. A folder holds one
recipe's demo: another recipe's teacher checkpoint there, or synthetic data of other modalities, is refused.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from fasd.config import load_registry, write_config
from fasd.data.open_source import open_source
from fasd.data.synth import DEFAULT_WORLD, DOMAIN_NAMES, synthesize
from fasd.demo.heldout import scores_name, student_setting, teacher_setting
from fasd.demo.recipes import DEMO_RECIPES, DemoBudget, DemoContext, DemoRecipe, demo_recipe, teacher_stage
from fasd.demo.report import write_report
from fasd.demo.stats import PAPER_EFFECTS, aggregate, compare
from fasd.errors import FasdError, warn
from fasd.io_checks import write_atomically
from fasd.evaluate.metrics import compute_metrics
from fasd.evaluate.scoring import readable_scores, score_rows
from fasd.evaluate.store_metrics import p_live
from fasd.export.latency import bench_model
from fasd.export.export import export_model
from fasd.experiment.figures import read_scores
from fasd.export.metadata import modalities_of
from fasd.export.runtimes import load_scorer
from fasd.store_schema.reader import load_targets
from fasd.store_schema.store import open_store
from fasd.student_train.trainer import Trainer

SOURCES = ("alpha", "beta")  # what the students train on
TARGET = "gamma"  # held out from students and teacher alike
STUDENTS = {"distilled": False, "no_teacher": True}  # summary key: --no-teacher


class StageClock:
    """Logs each stage and keeps its seconds in ``timings.json``; a stage skipped on a re-run keeps its time."""

    def __init__(self, path: Path, log: Callable[[str], None]):
        self.path = path
        self.log = log
        self.began = time.perf_counter()
        self.seconds: dict[str, float] = _read_timings(path)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.log(f"[demo {time.perf_counter() - self.began:6.1f}s] {name}")
        start = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - start, 1)
        text = json.dumps(self.seconds, indent=2)
        write_atomically(self.path, lambda tmp: tmp.write_text(text))

    @property
    def total(self) -> float:
        return round(sum(self.seconds.values()), 1)


def _read_timings(path: Path) -> dict[str, float]:
    """The stage seconds of earlier runs; a damaged file (e.g. a run killed mid-write by an older fasd) only
    costs the report those times, with a warning."""
    if not path.is_file():
        return {}
    try:
        seconds = json.loads(path.read_text())
        if isinstance(seconds, dict) and all(isinstance(v, (int, float)) for v in seconds.values()):
            return seconds
    except (OSError, ValueError):
        pass
    warn(f"{path} is damaged; the stage times of earlier runs are left out of the report's total")
    return {}


def _check_folder(out: Path, recipe: str) -> None:
    """One folder, one recipe: another recipe's teacher checkpoint in ``out`` means its store and runs are there."""
    for name, other in DEMO_RECIPES.items():
        if name != recipe and (out / other.teacher.checkpoint).is_file():
            raise FasdError(f"{out} holds the {name} demo ({other.teacher.checkpoint}); run --recipe {recipe} in "
                            f"another folder, e.g. --out {out}-{recipe}")


WORLD_FILE = "world.txt"  # in the data folder: the fasd synth --world of its domains (absent: fasd 0.2's, cues)


def _check_data(config: Path, modalities: tuple[str, ...]) -> None:
    """Synthetic domains already in the folder must hold exactly the recipe's modalities, of this demo's world."""
    registry = load_registry(config)
    for name in registry.datasets:
        held = open_source(registry.dataset(name)).modalities
        if tuple(held) != tuple(modalities):
            raise FasdError(f"{config.parent} holds synthetic domains of {', '.join(held)}; this demo needs "
                            f"{', '.join(modalities)}: give --out another folder")
    marker = config.parent / WORLD_FILE
    world = marker.read_text().strip() if marker.is_file() else "cues"
    if world != DEFAULT_WORLD:
        raise FasdError(f"{config.parent} holds synthetic domains of the '{world}' world (an older fasd demo); this "
                        f"demo needs the '{DEFAULT_WORLD}' world: give --out another folder")


def _demo_config(out: Path, budget: DemoBudget, modalities: tuple[str, ...], clock: StageClock,
                 progress: bool) -> Path:
    """Synthesise the domains; demo.toml registers them all with alpha, beta, gamma as protocol domains."""
    data = out / "data"
    config = data / "demo.toml"
    if config.is_file():
        _check_data(config, modalities)
        return config
    if budget.domains < 3:
        raise FasdError(f"the demo needs at least 3 domains (2 sources + 1 target), got {budget.domains}")
    names = DOMAIN_NAMES[:budget.domains]
    user_config = data / "fasd.toml"  # synth merges its domains into it: only a demo's own may be there
    foreign = sorted(set(load_registry(user_config).datasets) - set(names)) if user_config.is_file() else []
    if foreign:
        raise FasdError(f"{user_config} registers datasets of its own ({', '.join(foreign)}); the demo would add "
                        f"its synthetic domains to it: give --out another folder")
    with clock.stage(f"synth: {budget.domains} domains x {budget.frames} frames of {', '.join(modalities)}"):
        synthesize(data, domains=budget.domains, frames=budget.frames, size=budget.size, seed=budget.seed,
                   progress=progress, modalities=modalities)
        write_config(config, {n: {"format": "hdf5", "path": f"{n}.h5"} for n in names}, [*SOURCES, TARGET])
        (data / WORLD_FILE).write_text(DEFAULT_WORLD + "\n")
    return config


def _run_dir(out: Path, key: str, seed: int) -> Path:
    return out / "runs" / key / f"seed{seed}"


def _train(ctx: DemoContext, recipe: DemoRecipe, seed: int, no_teacher: bool, run_dir: Path) -> dict:
    if (run_dir / "metrics.json").is_file():
        return json.loads((run_dir / "metrics.json").read_text())
    with ctx.stage(f"train {ctx.protocol.name}: {'no teacher' if no_teacher else 'distilled'}, seed {seed}"):
        trainer = Trainer(ctx.registry, recipe.student_options(ctx, seed, no_teacher), run_dir,
                          progress=ctx.progress)
        return trainer.run(resume=(run_dir / "last.pt").is_file())


def _held_out(teacher: dict, students: dict[str, list[dict]], recipe: str) -> dict:
    """One held-out setting's summary block: the teacher's metrics, each student's seeds with their mean and
    sample std, and the comparison of the two students (fasd.demo.stats.compare: Δ of mean ACER@EER with its
    interval, std ratio with its interval, verdict)."""
    block: dict = {"teacher": teacher}
    for key, runs in students.items():
        mean, std = aggregate(runs, list(teacher))
        block[key] = {"seeds": runs, "mean": mean, "std": std}
    acer = {key: [run["at_eer"]["acer"] for run in block[key]["seeds"]] for key in STUDENTS}
    if all(v is not None for values in acer.values() for v in values):
        block["comparison"] = compare(acer["distilled"], acer["no_teacher"], paper=PAPER_EFFECTS.get(recipe))
    else:
        block["comparison"] = {"delta_acer_pp": None, "delta_ci": None, "std_ratio": None, "std_ratio_ci": None,
                               "verdict": "ACER is undefined for some seed (a test split without both classes), so "
                                          "there is no verdict."}
    return block


def run_demo(out: Path, budget: DemoBudget | None = None, recipe: str = "vlmkd", progress: bool = True,
             log: Callable[[str], None] = print) -> dict:
    """Run (or finish) the demo of ``recipe`` in ``out`` at ``budget`` (default: the recipe's own)."""
    chosen = demo_recipe(recipe)
    budget = budget or chosen.budget
    if budget.seeds < 1:
        raise FasdError(f"the demo needs at least one seed per student, got {budget.seeds}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_folder(out, recipe)
    clock = StageClock(out / "timings.json", log)
    config = _demo_config(out, budget, chosen.modalities, clock, progress)
    registry = load_registry(config)
    protocol = registry.protocol(f"holdout-{TARGET}")
    ctx = DemoContext(out=out, budget=budget, config=config, registry=registry, protocol=protocol,
                      teacher_domains=[d for d in registry.datasets if d != TARGET], store=out / "teacher.zarr",
                      progress=progress, stage=clock.stage)
    teacher_saw = teacher_stage(ctx, chosen.teacher)

    seeds = [budget.seed + s for s in range(budget.seeds)]
    students = {key: [_train(ctx, chosen, seed, no_teacher, _run_dir(out, key, seed)) for seed in seeds]
                for key, no_teacher in STUDENTS.items()}
    first = _run_dir(out, "distilled", budget.seed)
    with clock.stage("evaluate: teacher on the held-out target, distilled student in-domain"):
        teacher_metrics, teacher_curve = _teacher_on_target(ctx.store, registry, TARGET)
        in_domain = _in_domain(first / "best.pt", registry, list(protocol.sources), progress)
    teacher_curves = {(): teacher_curve}
    missing_blocks = {}
    if chosen.missing:
        with clock.stage(f"evaluate on the held-out target with {'; '.join('/'.join(m) for m in chosen.missing)} "
                         f"missing"):
            source = open_source(registry.dataset(TARGET))
            rows = source.table.rows_in_splits(["test"])
            loaded = chosen.teacher.load(ctx)
            for missing in chosen.missing:
                metrics, teacher_curves[missing] = teacher_setting(loaded, source, rows, missing,
                                                                   out / f"teacher-{scores_name(missing)}", progress)
                runs = {key: [student_setting(_run_dir(out, key, run["seed"]), run, source, rows, missing, progress)
                              for run in runs] for key, runs in students.items()}
                missing_blocks[",".join(missing)] = {"missing": list(missing), **_held_out(metrics, runs, recipe)}

    onnx_path = out / "student.onnx"
    if not onnx_path.is_file():
        with clock.stage("export the distilled student (first seed) to ONNX"):
            log(export_model(first / "best.pt", onnx_path).describe())
    with clock.stage("bench the ONNX student"):
        latency = bench_model(onnx_path, runs=budget.bench_runs, warmup=max(10, budget.bench_runs // 10), batch=1,
                             progress=progress)

    summary: dict = {"protocol": protocol.name, "recipe": recipe, "modalities": list(chosen.modalities),
                     "sources": list(protocol.sources), "target": TARGET, "teacher_saw": teacher_saw,
                     **_held_out(teacher_metrics, students, recipe), "missing": missing_blocks,
                     "distilled_in_domain": in_domain, "budget_note": chosen.note}
    summary["onnx"] = {"bytes": onnx_path.stat().st_size, "median_ms": latency["median_ms"],
                       "p95_ms": latency["p95_ms"], "cpu": latency["cpu"]}
    summary["stage_seconds"] = clock.seconds
    summary["seconds"] = clock.total
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    curves = {missing: (curve, {key: [read_scores(_run_dir(out, key, seed) / scores_name(missing)) for seed in seeds]
                                for key in STUDENTS})
              for missing, curve in teacher_curves.items()}
    write_report(out, summary, chosen.title, curves)
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
        rows, in_domain = readable_scores(source, rows, score_rows(
            scorer.p_live, source, rows, progress=progress, desc=f"in-domain {name}",
            size=scorer.metadata["input_size"], modalities=modalities_of(scorer.metadata)))
        labels.append(source.table.label[rows])
        scores.append(in_domain)
    return compute_metrics(np.concatenate(labels), np.concatenate(scores))
