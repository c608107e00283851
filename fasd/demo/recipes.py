"""The recipe-specific parts of ``fasd demo``, one table entry per recipe (the pipeline around them is shared).

A recipe provides its budget (the sizes of every stage), the modalities its synthetic domains hold, the
held-out settings besides "every modality present" (``missing``: modalities zeroed at test time, Protocol 2),
its teacher (how to fine-tune, save and cache it) and the student's training options for one seed with or
without the teacher.

Every recipe's distilled students use the temperature τ matched to the cached teacher's logit scale
(``matched_tau``): the teacher's median |live − spoof| logit gap on the students' own training frames, divided by
ln 9, so that at τ the median frame's soft target puts 0.9 on the teacher's top class (never below τ = 1: a
teacher less sure than that is not sharpened). FLIP-MCL's logit scale of 100 gives gaps around 10–20 and τ ≈ 4–9,
whence paper A's τ = 4; a tiny random-init teacher's fixed scale of 1/0.07 gives gaps of a few units.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fasd.constants import MODALITIES
from fasd.data.open_source import open_source
from fasd.device import default_workers
from fasd.errors import FasdError
from fasd.store_schema.reader import load_targets
from fasd.store_schema.store import open_store
from fasd.export.export import export_model
from fasd.student_train.run_config import TrainOptions
from fasd.student_train.trainer import Trainer
from fasd.teacher_cache.arch import TINY_ARCH
from fasd.teacher_cache.finetune import finetune_teacher
from fasd.teacher_cache.job import CacheOptions, run_cache
from fasd.teacher_cache.registry import LoadedTeacher, TeacherOptions, load_teacher
from fasd.views import ViewSettings


@dataclass
class DemoBudget:
    """Sizes of every stage (docs/demo.md says what each recipe's defaults take on 2 cores)."""

    domains: int = 8  # synthesised (all fasd synth has); the teacher sees all but the target, the students two
    frames: int = 900  # per domain
    size: int = 112
    teacher_epochs: int = 8
    teacher_draws: int = 1200  # frames per teacher epoch
    student_epochs: int = 4
    max_draws: int = 384  # frames per student epoch
    batch_size: int = 64
    seeds: int = 3  # per student
    views: int = 0  # augmented views per frame cached and replayed by the distilled student (0: no --views)
    bench_runs: int = 300
    seed: int = 0  # data and teacher


@dataclass
class DemoContext:
    """What every stage of one demo run shares."""

    out: Path
    budget: DemoBudget
    config: Path
    registry: object  # fasd.config.DatasetRegistry
    protocol: object  # fasd.config.Protocol
    teacher_domains: list[str]  # every synthetic domain but the target
    store: Path
    progress: bool
    stage: Callable  # stage(name) -> context manager that logs and times a stage
    tau: float | None = None  # the distilled students' KL temperature, matched to the cached teacher (teacher_stage)


@dataclass(frozen=True)
class DemoTeacher:
    """A random-init teacher fine-tuned with ``teacher-finetune --method method`` (or made by ``train``) and cached
    as ``--teacher kind``.

    ``checkpoint`` is a file name in the demo folder, distinct per recipe: it is also how a folder is known to
    hold that recipe's demo (one folder, one recipe: the store and the student runs are the recipe's own).
    ``train(ctx, checkpoint)``, when given, replaces ``teacher-finetune``: it writes the checkpoint and, beside it,
    ``<checkpoint>.json`` with the ``sources``, ``epochs`` and ``draws_per_epoch`` it trained with.
    """

    checkpoint: str
    method: str
    arch: str
    kind: str
    model: str  # what it is, in the report
    options: dict = field(default_factory=dict)  # TeacherOptions beyond the checkpoint
    finetune: dict = field(default_factory=dict)  # finetune_teacher arguments beyond the demo's budget
    train: Callable[[DemoContext, Path], None] | None = None

    def load(self, ctx: DemoContext) -> LoadedTeacher:
        return load_teacher(self.kind, TeacherOptions(ctx.out / self.checkpoint, **self.options))


@dataclass(frozen=True)
class DemoRecipe:
    """One recipe's demo: its name in reports, its teacher, its students' options, its sizes, its data and the
    held-out settings it is scored in (every modality present first, then each ``missing`` tuple zeroed)."""

    title: str  # what the students are, in the report
    teacher: DemoTeacher
    student_options: Callable[[DemoContext, int, bool], TrainOptions]  # (ctx, seed, no_teacher)
    budget: DemoBudget = field(default_factory=DemoBudget)
    modalities: tuple[str, ...] = ("rgb",)  # what the synthetic domains hold (fasd synth --modalities)
    missing: tuple[tuple[str, ...], ...] = ()  # further held-out settings: these modalities zeroed at test time
    note: str = ""  # what this recipe's demo budget cannot show, and what it would take (in the report)


TAU_CONFIDENCE = 0.9  # the soft target of the median training frame puts this on the teacher's top class


def matched_tau(logits: np.ndarray) -> float:
    """τ for KL distillation from (N, 2) teacher logits [spoof, live] of the students' training frames: the median
    |live - spoof| over logit(0.9) = ln 9, at least 1 (see the module docstring)."""
    logits = np.asarray(logits, dtype=np.float64)
    gap = float(np.median(np.abs(logits[:, 1] - logits[:, 0])))
    return max(1.0, gap / math.log(TAU_CONFIDENCE / (1 - TAU_CONFIDENCE)))


def source_logits(ctx: DemoContext) -> np.ndarray:
    """The cached teacher logits of the students' training frames (every source's train split)."""
    store = open_store(str(ctx.store))
    parts = []
    for name in ctx.protocol.sources:
        table = open_source(ctx.registry.dataset(name)).table
        targets = load_targets(store, name, ("logits",))
        rows = targets.rows_for(table.frame_id[table.rows_in_splits(["train"])])
        parts.append(targets.arrays["logits"][rows[rows >= 0]])
    return np.concatenate(parts)


def teacher_stage(ctx: DemoContext, teacher: DemoTeacher) -> dict:
    """Fine-tune the random-init teacher on every domain but the target (skipped when its checkpoint exists),
    cache it for the protocol's domains (with the budget's views), set ``ctx.tau`` from its cached logits, and say
    what it saw."""
    checkpoint = ctx.out / teacher.checkpoint
    if not checkpoint.is_file() and teacher.train is not None:
        with ctx.stage(f"teacher: {teacher.model} on {', '.join(ctx.teacher_domains)}"):
            teacher.train(ctx, checkpoint)
    elif not checkpoint.is_file():
        with ctx.stage(f"teacher-finetune --method {teacher.method}: {teacher.model} on "
                       f"{', '.join(ctx.teacher_domains)}"):
            finetune_teacher(ctx.config, ctx.teacher_domains, checkpoint, method=teacher.method, arch=teacher.arch,
                             epochs=ctx.budget.teacher_epochs, seed=ctx.budget.seed,
                             max_frames_per_epoch=ctx.budget.teacher_draws, workers=default_workers(),
                             progress=ctx.progress, **teacher.finetune)
    domains = [*ctx.protocol.sources, ctx.protocol.target]
    with ctx.stage(f"cache-teacher --teacher {teacher.kind}: {', '.join(domains)}"):
        loaded = teacher.load(ctx)
        for name in domains:
            run_cache(open_source(ctx.registry.dataset(name)), loaded, str(ctx.store),
                      CacheOptions(batch_size=64, chunk_rows=1024, progress=ctx.progress,
                                   views=ViewSettings(count=ctx.budget.views, seed=ctx.budget.seed)))
    ctx.tau = matched_tau(source_logits(ctx))
    trained = json.loads(Path(f"{checkpoint}.json").read_text())
    # counted here, not read from the summary: every method trains on its sources' whole train splits
    train_frames = {name: len(open_source(ctx.registry.dataset(name)).table.rows_in_splits(["train"]))
                    for name in trained["sources"]}
    how = (f"trained without a teacher, cached with --teacher {teacher.kind}" if teacher.train is not None
           else f"fine-tuned with --method {teacher.method}")
    return {"model": f"{teacher.model} (random init), {how}",
            "domains": trained["sources"], "train_frames": train_frames, "epochs": trained["epochs"],
            "draws_per_epoch": trained["draws_per_epoch"], "tau": ctx.tau, "views": ctx.budget.views}


def _student_options(recipe: str, ctx: DemoContext, seed: int, no_teacher: bool, **extra) -> TrainOptions:
    """The recipe's training options at the demo's budget (``extra``: the recipe's demo-specific overrides)."""
    b = ctx.budget
    return TrainOptions.for_recipe(recipe, protocol=ctx.protocol.name, sources=list(ctx.protocol.sources),
                                   target=ctx.protocol.target, config=str(ctx.config),
                                   store=None if no_teacher else str(ctx.store), epochs=b.student_epochs,
                                   batch_size=b.batch_size, max_draws=b.max_draws, no_teacher=no_teacher,
                                   seed=seed, tau=None if no_teacher else ctx.tau,
                                   views=bool(b.views) and not no_teacher, **extra)


def _vlmkd_options(ctx: DemoContext, seed: int, no_teacher: bool) -> TrainOptions:
    # The ONNX teacher caches logits only: CE + KL + SSDG triplet (the feature term has no target to read).
    return _student_options("vlmkd", ctx, seed, no_teacher, lambda_feat=0.0)


def _wide_student_teacher(ctx: DemoContext, checkpoint: Path) -> None:
    """vlmkd's teacher: the student's own architecture trained without a teacher on every domain but the target (the
    budget's teacher epochs and draws), its best checkpoint exported to ONNX. What it knows beyond the students is
    the breadth of its data — the part of FLIP-MCL's advantage this demo can reproduce on a CPU in minutes: the
    tiny random-init CLIP learns the shared cue far too slowly (docs/benchmarks.md)."""
    b = ctx.budget
    run = ctx.out / "teacher_run"
    options = TrainOptions.for_recipe("vlmkd", protocol=f"all-but-{ctx.protocol.target}", sources=ctx.teacher_domains,
                                      target=ctx.protocol.target, config=str(ctx.config), store=None, no_teacher=True,
                                      epochs=b.teacher_epochs, max_draws=b.teacher_draws, batch_size=b.batch_size,
                                      seed=b.seed)
    Trainer(ctx.registry, options, run, progress=ctx.progress).run(resume=(run / "last.pt").is_file())
    export_model(run / "best.pt", checkpoint)
    Path(f"{checkpoint}.json").write_text(json.dumps({"sources": ctx.teacher_domains, "epochs": b.teacher_epochs,
                                                      "draws_per_epoch": b.teacher_draws}, indent=2))


# hatfas on CPU: tiny timm ViTs (DeiT-Tiny's architecture) at 64 px, so a 3-seed demo fits in minutes.
HATFAS_ARCH = "deit_tiny_patch16_224"
HATFAS_SIZE = 64
HATFAS_LAYERS = (4, 6, 8)


def _hatfas_options(ctx: DemoContext, seed: int, no_teacher: bool) -> TrainOptions:
    # DeiT's 5 warm-up epochs and batch-scaled lr are for 300 epochs; the demo's few epochs need one and 5e-4
    return _student_options("hatfas", ctx, seed, no_teacher, input_size=HATFAS_SIZE, warmup_epochs=1, lr=5e-4)


# mmda on CPU: the tiny CLIP with MMDA's modules at paper B's defaults (MD2A, U-DSA depth 7, RS2, batch 24) on
# RGB, depth and IR. A multimodal student step runs three MobileNetV3-Small encoders on three images per frame
# (about 30 ms a frame on 2 cores), so the students see fewer frames than vlmkd's, in smaller batches (more
# steps for the same time), and there are 6 domains of 600 frames.
MMDA_TEACHER_BATCH = 24
MMDA_BUDGET = DemoBudget(domains=6, frames=600, teacher_epochs=6, teacher_draws=960, student_epochs=3,
                         max_draws=320, batch_size=32)


def _mmda_options(ctx: DemoContext, seed: int, no_teacher: bool) -> TrainOptions:
    return _student_options("mmda", ctx, seed, no_teacher)


# vlmkd: the teacher (MobileNetV3-Small on 7 domains) gets 400 steps, each student 80, in few epochs (every epoch
# costs a validation pass and a new DataLoader worker); docs/benchmarks.md: the learning curve behind this choice
# and the time it takes on 2 cores.
VLMKD_BUDGET = DemoBudget(teacher_epochs=4, teacher_draws=6400, student_epochs=4, max_draws=1280)

DEMO_RECIPES: dict[str, DemoRecipe] = {
    "vlmkd": DemoRecipe(
        "the vlmkd recipe (paper A): MobileNetV3-Small, CE + KL + SSDG triplet (its feature term is off: the ONNX "
        "teacher caches logits only)",
        DemoTeacher("teacher.onnx", "student", "mobilenetv3-small", "onnx", "MobileNetV3-Small",
                    {"normalize": "imagenet"},
                    train=_wide_student_teacher), _vlmkd_options, budget=VLMKD_BUDGET),
    "hatfas": DemoRecipe(
        f"the hatfas recipe (paper C): {HATFAS_ARCH} at {HATFAS_SIZE} px, (1 - α) CE + α KL + β head-aware on layers "
        f"{','.join(map(str, HATFAS_LAYERS))}",
        DemoTeacher("teacher_vit.pth", "vit", HATFAS_ARCH, "vit", f"{HATFAS_ARCH} at {HATFAS_SIZE} px",
                    {"arch": HATFAS_ARCH, "layers": HATFAS_LAYERS}, {"input_size": HATFAS_SIZE, "lr": 5e-4}),
        _hatfas_options, note=(
            "its teacher is a DeiT-Tiny trained from random weights for 8 epochs of 1200 draws (about 150 steps); in "
            "the shared world the tiny random-init CLIP needed far more than that to learn the shared cue (20 epochs "
            "of 1200 draws left it at 29 % validation EER) while vlmkd's CNN teacher needed 400 steps on the 7 "
            "domains to reach about 10 % held-out ACER@EER. If the check below fails, testing paper C's system here "
            "would take a ViT teacher trained several times longer, beyond this demo's 10 minutes on 2 cores.")),
    "mmda": DemoRecipe(
        "the mmda recipe (paper B): one MobileNetV3-Small per modality (RGB, depth, IR), CE + KL + feature + RS2 "
        "alignment to the teacher's captions",
        DemoTeacher("teacher_mmda.pt", "mmda", TINY_ARCH, "mmda",
                    f"tiny CLIP {TINY_ARCH} with MD2A, U-DSA and RS2 on RGB, depth and IR",
                    finetune={"batch_size": MMDA_TEACHER_BATCH}),
        _mmda_options, budget=MMDA_BUDGET, modalities=MODALITIES, missing=(("depth",),), note=(
            "its teacher is the tiny random-init CLIP with MMDA's modules, 6 epochs of 960 draws at batch 24 (about "
            "240 steps); in RGB alone that CLIP learns the shared world's cue far too slowly (20 epochs of 1200 draws: "
            "29 % validation EER), though depth and IR carry cues of their own. If the check below fails, the test "
            "would take a teacher trained several times longer, beyond this demo's 10 minutes on 2 cores.")),
}


def demo_recipe(name: str) -> DemoRecipe:
    if name not in DEMO_RECIPES:
        raise FasdError(f"no demo for recipe '{name}'; demos exist for: {', '.join(DEMO_RECIPES)}")
    return DEMO_RECIPES[name]
