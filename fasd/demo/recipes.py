"""The recipe-specific stages of ``fasd demo``, one table entry per recipe (the pipeline around them is shared).

A recipe provides the teacher (train it, cache its targets for the protocol's domains into the store, and
say what it saw) and the student's training options for one seed with or without the teacher.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fasd.data.open_source import open_source
from fasd.errors import FasdError
from fasd.student_train.run_config import TrainOptions
from fasd.teacher_cache.arch import TINY_ARCH
from fasd.teacher_cache.finetune import finetune_teacher
from fasd.teacher_cache.job import CacheOptions, run_cache
from fasd.teacher_cache.registry import TeacherOptions, load_teacher


@dataclass
class DemoContext:
    """What every stage of one demo run shares."""

    out: Path
    budget: "DemoBudget"  # noqa: F821 (fasd.demo.pipeline)
    config: Path
    registry: object  # fasd.config.Registry
    protocol: object  # fasd.config.Protocol
    teacher_domains: list[str]  # every synthetic domain but the target
    store: Path
    progress: bool
    stage: Callable  # stage(name) -> context manager that logs and times a stage


@dataclass(frozen=True)
class DemoRecipe:
    """One recipe's demo: its name in reports, its teacher stage, and its students' options."""

    title: str  # e.g. "paper A (VLM-KD): MobileNetV3-Small, CE + KL + feature + SSDG triplet"
    teacher: Callable[[DemoContext], dict]  # builds the teacher and its store; returns what it saw
    student_options: Callable[[DemoContext, int, bool], TrainOptions]  # (ctx, seed, no_teacher)


def _vlmkd_teacher(ctx: DemoContext) -> dict:
    """FLIP-style fine-tuning of a tiny random-init CLIP on every domain but the target, then caching."""
    checkpoint = ctx.out / "teacher.pt"
    if not checkpoint.is_file():
        with ctx.stage(f"teacher-finetune: {TINY_ARCH} on {', '.join(ctx.teacher_domains)}"):
            finetune_teacher(ctx.config, ctx.teacher_domains, checkpoint, arch=TINY_ARCH,
                             epochs=ctx.budget.teacher_epochs, seed=ctx.budget.seed,
                             max_frames_per_epoch=ctx.budget.teacher_draws, progress=ctx.progress)
    domains = [*ctx.protocol.sources, ctx.protocol.target]
    with ctx.stage(f"cache-teacher: {', '.join(domains)}"):
        loaded = load_teacher("flip-mcl", TeacherOptions(checkpoint))
        for name in domains:
            run_cache(open_source(ctx.registry.dataset(name)), loaded, str(ctx.store),
                      CacheOptions(batch_size=64, chunk_rows=1024, progress=ctx.progress))
    trained = json.loads(Path(f"{checkpoint}.json").read_text())
    return {"model": f"tiny CLIP ({TINY_ARCH}, random init), FLIP-style fine-tuning",
            "domains": trained["sources"], "train_frames": trained["train_frames"],
            "epochs": trained["epochs"], "draws_per_epoch": trained["draws_per_epoch"]}


def _vlmkd_options(ctx: DemoContext, seed: int, no_teacher: bool) -> TrainOptions:
    b = ctx.budget
    return TrainOptions.for_recipe("vlmkd", protocol=ctx.protocol.name, sources=list(ctx.protocol.sources),
                                   target=ctx.protocol.target, config=str(ctx.config),
                                   store=None if no_teacher else str(ctx.store), epochs=b.student_epochs,
                                   batch_size=b.batch_size, max_draws=b.max_draws, no_teacher=no_teacher,
                                   seed=seed)


DEMO_RECIPES: dict[str, DemoRecipe] = {
    "vlmkd": DemoRecipe("paper A (VLM-KD): MobileNetV3-Small student, CE + KL + feature + SSDG triplet",
                        _vlmkd_teacher, _vlmkd_options),
}


def demo_recipe(name: str) -> DemoRecipe:
    if name not in DEMO_RECIPES:
        raise FasdError(f"no demo for recipe '{name}'; demos exist for: {', '.join(DEMO_RECIPES)}")
    return DEMO_RECIPES[name]
