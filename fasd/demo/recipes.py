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
from fasd.device import default_workers
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

    title: str  # what the students are, in the report
    teacher: Callable[[DemoContext], dict]  # builds the teacher and its store; returns what it saw
    student_options: Callable[[DemoContext, int, bool], TrainOptions]  # (ctx, seed, no_teacher)


def _teacher_stage(ctx: DemoContext, checkpoint: Path, method: str, arch: str, kind: str, model: str,
                   teacher_options: dict, finetune: dict) -> dict:
    """Fine-tune a random-init teacher with ``method`` on every domain but the target (skipped when its
    checkpoint exists), cache it as ``kind`` for the protocol's domains, and say what it saw."""
    if not checkpoint.is_file():
        with ctx.stage(f"teacher-finetune --method {method}: {model} on {', '.join(ctx.teacher_domains)}"):
            finetune_teacher(ctx.config, ctx.teacher_domains, checkpoint, method=method, arch=arch,
                             epochs=ctx.budget.teacher_epochs, seed=ctx.budget.seed,
                             max_frames_per_epoch=ctx.budget.teacher_draws, workers=default_workers(),
                             progress=ctx.progress, **finetune)
    domains = [*ctx.protocol.sources, ctx.protocol.target]
    with ctx.stage(f"cache-teacher --teacher {kind}: {', '.join(domains)}"):
        loaded = load_teacher(kind, TeacherOptions(checkpoint, **teacher_options))
        for name in domains:
            run_cache(open_source(ctx.registry.dataset(name)), loaded, str(ctx.store),
                      CacheOptions(batch_size=64, chunk_rows=1024, progress=ctx.progress))
    trained = json.loads(Path(f"{checkpoint}.json").read_text())
    return {"model": f"{model} (random init), fine-tuned with --method {method}", "domains": trained["sources"],
            "train_frames": trained["train_frames"], "epochs": trained["epochs"],
            "draws_per_epoch": trained["draws_per_epoch"]}


def _vlmkd_teacher(ctx: DemoContext) -> dict:
    """FLIP-style fine-tuning of a tiny CLIP, cached as flip-mcl (logits + unit feature)."""
    return _teacher_stage(ctx, ctx.out / "teacher.pt", "clip", TINY_ARCH, "flip-mcl", f"tiny CLIP {TINY_ARCH}",
                          {}, {})


def _student_options(recipe: str, ctx: DemoContext, seed: int, no_teacher: bool, **extra) -> TrainOptions:
    """The recipe's training options at the demo's budget (``extra``: the recipe's demo-specific overrides)."""
    b = ctx.budget
    return TrainOptions.for_recipe(recipe, protocol=ctx.protocol.name, sources=list(ctx.protocol.sources),
                                   target=ctx.protocol.target, config=str(ctx.config),
                                   store=None if no_teacher else str(ctx.store), epochs=b.student_epochs,
                                   batch_size=b.batch_size, max_draws=b.max_draws, no_teacher=no_teacher,
                                   seed=seed, **extra)


def _vlmkd_options(ctx: DemoContext, seed: int, no_teacher: bool) -> TrainOptions:
    return _student_options("vlmkd", ctx, seed, no_teacher)


# hatfas on CPU: tiny timm ViTs (DeiT-Tiny's architecture) at 64 px, so a 3-seed demo fits in minutes.
HATFAS_ARCH = "deit_tiny_patch16_224"
HATFAS_SIZE = 64
HATFAS_LAYERS = (4, 6, 8)


def _hatfas_teacher(ctx: DemoContext) -> dict:
    """A DeiT-Tiny at 64 px fine-tuned with ``--method vit``, cached with its layer tokens."""
    return _teacher_stage(ctx, ctx.out / "teacher_vit.pth", "vit", HATFAS_ARCH, "vit",
                          f"{HATFAS_ARCH} at {HATFAS_SIZE} px", {"arch": HATFAS_ARCH, "layers": HATFAS_LAYERS},
                          {"input_size": HATFAS_SIZE, "lr": 5e-4})


def _hatfas_options(ctx: DemoContext, seed: int, no_teacher: bool) -> TrainOptions:
    # DeiT's 5 warm-up epochs and batch-scaled lr are for 300 epochs; the demo's few epochs need one and 5e-4
    return _student_options("hatfas", ctx, seed, no_teacher, input_size=HATFAS_SIZE, warmup_epochs=1, lr=5e-4)


DEMO_RECIPES: dict[str, DemoRecipe] = {
    "vlmkd": DemoRecipe("the vlmkd recipe (paper A): MobileNetV3-Small, CE + KL + feature + SSDG triplet",
                        _vlmkd_teacher, _vlmkd_options),
    "hatfas": DemoRecipe(f"the hatfas recipe (paper C): {HATFAS_ARCH} at {HATFAS_SIZE} px, (1 - α) CE + α KL + β "
                         f"head-aware on layers {','.join(map(str, HATFAS_LAYERS))}", _hatfas_teacher, _hatfas_options),
}


def demo_recipe(name: str) -> DemoRecipe:
    if name not in DEMO_RECIPES:
        raise FasdError(f"no demo for recipe '{name}'; demos exist for: {', '.join(DEMO_RECIPES)}")
    return DEMO_RECIPES[name]
