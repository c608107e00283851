"""Phase 2 commands: train, experiment, demo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from fasd.cli.app import _csv, _finite_in, _layers, command
from fasd.errors import FasdError
from fasd.evaluate.metrics import DEFAULT_OPERATING_POINT, OPERATING_POINT_HELP


def _resolve_protocol(registry, split: Optional[str], sources: Optional[str], target: Optional[str]):
    if split and (sources or target):
        raise FasdError("give either --split PROTOCOL or --sources A,B --target C, not both")
    if split:
        return registry.protocol(split)
    if sources and target:
        return registry.explicit_protocol(_csv(sources), _csv(target))
    raise FasdError("name the protocol: --split holdout-X / A-to-B / A,B-to-C,D / intra-X, or --sources A,B "
                    "--target C")


def _by_recipe(flag: str) -> str:
    """A flag's default in every recipe, for --help: 'vlmkd 0, hatfas 0.8, mmda 0'."""
    from fasd.student_train.recipes import RECIPES, recipe_defaults

    return ", ".join(f"{name} {recipe_defaults(name)[flag]:g}" if isinstance(recipe_defaults(name)[flag], float)
                     else f"{name} {recipe_defaults(name)[flag]}" for name in RECIPES)


def _alias_help(term: str) -> str:
    """--lambda-TERM's help, from the loss-term registry."""
    from fasd.student_train.loss_terms import TERMS

    chosen = TERMS[term]
    return f"Same as --loss {term}=W: weight of {chosen.help} (default: {_by_recipe(chosen.alias)})."


def _loss_help() -> str:
    from fasd.student_train.loss_terms import TERMS

    return ("Loss-term weight NAME=W, repeatable (e.g. --loss kl=0.5 --loss feat=0); overrides the recipe's. Terms: "
            + "; ".join(term.describe() for term in TERMS.all().values()) + ".")


def _recipes_help() -> str:
    from fasd.student_train.recipes import RECIPES

    return ("Named defaults: " + "; ".join(f"{name} ({chosen.summary})" for name, chosen in RECIPES.all().items())
            + f" (default {next(iter(RECIPES))}). Every flag below overrides. `--recipe NAME --help` lists NAME's "
              "defaults.")


def _recipe_help(ctx: typer.Context, value: str) -> str:
    """`fasd train --recipe NAME --help`: the help text ends with NAME's defaults (--recipe is eager, so it is
    read before --help when given first)."""
    from fasd.student_train.recipes import RECIPES, describe

    command = ctx.command
    base = getattr(command, "fasd_base_help", None) or command.help
    command.fasd_base_help = base
    command.help = f"{base}\n\n{describe(value)}" if value in RECIPES else base
    return value


@command("train")
def train(
    split: Annotated[Optional[str], typer.Option(help="Protocol: holdout-X (train on the other protocol "
                                                      "domains, test on X), A-to-B, A,B-to-C,D (limited "
                                                      "sources; C's and D's test splits pooled into one test "
                                                      "set), or intra-X (X's own train/val/test splits).")
                      ] = None,
    sources: Annotated[Optional[str], typer.Option(help="Comma-separated source datasets (with --target).")
                       ] = None,
    target: Annotated[Optional[str], typer.Option(help="Held-out target dataset (with --sources); several, "
                                                       "comma-separated, are tested as one pooled set.")] = None,
    config: Annotated[Optional[Path], typer.Option(help="fasd.toml (default: $FASD_CONFIG, ./fasd.toml).")] = None,
    store: Annotated[str, typer.Option(help="Teacher store written by cache-teacher: folder or fsspec URL "
                                            "(s3://...).")] = "teacher.zarr",
    recipe: Annotated[str, typer.Option(help=_recipes_help(), is_eager=True, callback=_recipe_help)] = "vlmkd",
    student: Annotated[Optional[str], typer.Option(help="Registered student: mobilenetv3-small, deit-tiny or "
                                                        "mobilenetv3-small-mm (RGB + depth + IR) (default: the "
                                                        "recipe's).")] = None,
    student_arch: Annotated[Optional[str], typer.Option(help="deit-tiny: another timm ViT name (default "
                                                             "deit_tiny_patch16_224).")] = None,
    input_size: Annotated[Optional[int], typer.Option(help="deit-tiny: another input side in pixels (default "
                                                           "224).")] = None,
    epochs: Annotated[Optional[int], typer.Option(help=f"Training epochs (default: {_by_recipe('--epochs')}).")
                      ] = None,
    batch_size: Annotated[Optional[int], typer.Option(help=f"Frames per step (default: {_by_recipe('--batch-size')})."
                                                      )] = None,
    lr: Annotated[Optional[float], typer.Option(help=f"AdamW peak learning rate (default: {_by_recipe('--lr')}).")
                  ] = None,
    weight_decay: Annotated[Optional[float], typer.Option(
        help=f"AdamW weight decay (default: {_by_recipe('--weight-decay')}).")] = None,
    warmup_epochs: Annotated[Optional[int], typer.Option(
        help=f"Linear warm-up epochs before the cosine decay (default: {_by_recipe('--warmup-epochs')}).")] = None,
    max_draws: Annotated[Optional[int], typer.Option(help="Domain-balanced draws per epoch, at most the train "
                                                          "size (default 60000).")] = None,
    loss: Annotated[Optional[list[str]], typer.Option(metavar="NAME=W", help=_loss_help())] = None,
    lambda_ce: Annotated[Optional[float], typer.Option(help=_alias_help("ce"))] = None,
    lambda_kl: Annotated[Optional[float], typer.Option(help=_alias_help("kl"))] = None,
    lambda_feat: Annotated[Optional[float], typer.Option(help=_alias_help("feat"))] = None,
    lambda_triplet: Annotated[Optional[float], typer.Option(help=_alias_help("triplet"))] = None,
    lambda_head_aware: Annotated[Optional[float], typer.Option(help=_alias_help("head-aware"))] = None,
    lambda_rs2: Annotated[Optional[float], typer.Option(help=_alias_help("rs2"))] = None,
    modality_dropout: Annotated[Optional[float], typer.Option(help="mobilenetv3-small-mm: chance that a modality of "
                                                                   "a training sample is replaced by the zero "
                                                                   "image (default 0).")] = None,
    alpha: Annotated[Optional[float], typer.Option(help="HaTFAS shorthand: sets --lambda-ce 1-α and --lambda-kl "
                                                        "α (default: unset).")] = None,
    beta: Annotated[Optional[float], typer.Option(help="HaTFAS shorthand: sets --lambda-head-aware β (default: "
                                                       "unset).")] = None,
    tau: Annotated[Optional[float], typer.Option(help=f"KL temperature (default: {_by_recipe('--tau')}).")] = None,
    margin: Annotated[Optional[float], typer.Option(help="Triplet margin (default 0.5).")] = None,
    layers: Annotated[Optional[str], typer.Option(help="Student blocks whose CLS tokens meet the teacher's "
                                                       "layer_cls, 0-based (default: hatfas 4,6,8).")] = None,
    layer_tap: Annotated[Optional[str], typer.Option(help="block or official; must match the store's (default: "
                                                          "block).")] = None,
    no_teacher: Annotated[bool, typer.Option("--no-teacher", help="CE only (all λ = 0); needs no store.")
                          ] = False,
    seed: Annotated[int, typer.Option(help="Random seed (runs are deterministic on CPU).")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    workers: Annotated[Optional[int], typer.Option(help="DataLoader workers (default: half the cores).")] = None,
    student_weights: Annotated[Optional[Path], typer.Option(
        help="torchvision mobilenet_v3_small ImageNet state dict (default: the local torch hub cache).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Run directory (default runs/<protocol>-seed<seed>).")
                   ] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue an interrupted run directory.")] = None,
    stream_targets: Annotated[bool, typer.Option(
        "--stream-targets/--targets-in-memory",
        help="Read teacher features from the store chunk by chunk (stores larger than memory) instead of "
             "loading them.")] = False,
    operating_point: Annotated[Optional[str], typer.Option(
        help=f"Where best.pt's decision threshold is chosen on the sources' validation split: {OPERATING_POINT_HELP}"
             f" (default {DEFAULT_OPERATING_POINT}).")] = None,
    views: Annotated[Optional[bool], typer.Option(
        "--views/--no-views", help="Replay the store's augmentation views (cache-teacher --views K): each draw "
                                   "takes one stored view's crop, flip and jitter and that view's targets "
                                   "(default: off, the student's own random augmentation).")] = None,
    augment: Annotated[Optional[str], typer.Option(help="Augmentation policy (its values are the defaults of the "
                                                        "flags below): fasd (random resized crop 0.6-1, jitter, "
                                                        "flip; plain resize at evaluation) or deit (HaTFAS: timm "
                                                        "RandAugment rand-m9-mstd0.5-inc1, crop 0.08-1 bicubic, "
                                                        "erasing 0.25; resize 256/224 + centre crop at evaluation) "
                                                        f"(default: {_by_recipe('--augment')}).")] = None,
    mixup: Annotated[Optional[float], typer.Option(help="Mixup alpha, timm's Mixup (0: off). A distilling run "
                                                        "mixes only through a store cached with --views K --mix "
                                                        f"(default: {_by_recipe('--mixup')}).")] = None,
    cutmix: Annotated[Optional[float], typer.Option(help=f"CutMix alpha (default: {_by_recipe('--cutmix')}).")
                      ] = None,
    smoothing: Annotated[Optional[float], typer.Option(help="Label smoothing of the CE term's (mixed) targets, "
                                                            "timm's SoftTargetCrossEntropy (default: "
                                                            f"{_by_recipe('--smoothing')}).")] = None,
    model_ema: Annotated[Optional[float], typer.Option(help="Decay of timm's ModelEmaV3 of the student's weights, "
                                                            "kept in last.pt (0: none; default: "
                                                            f"{_by_recipe('--model-ema')}).")] = None,
    repeated_aug: Annotated[Optional[int], typer.Option(help="Repeated augmentation: each draw taken N times in a "
                                                             f"row (0: off; default: {_by_recipe('--repeated-aug')})."
                                                        )] = None,
    clip_grad: Annotated[Optional[float], typer.Option(help="Gradient-norm clipping (0: none; default: "
                                                            f"{_by_recipe('--clip-grad')}).")] = None,
    min_lr: Annotated[Optional[float], typer.Option(help="Floor of the cosine learning-rate decay, capped at "
                                                         "the peak lr (default: "
                                                         f"{_by_recipe('--min-lr')}).")] = None,
    kl_direction: Annotated[Optional[str], typer.Option(help="teacher-student: τ²·KL(p_T‖p_S) (Hinton, timm, "
                                                             "HaTFAS); student-teacher: τ²·KL(p_S‖p_T), the "
                                                             "arguments as paper A prints them (default: "
                                                             "teacher-student).")] = None,
) -> None:
    """Distil the student from the cached teacher targets; evaluate the best checkpoint on the target.

    Several GPUs: `torchrun --nproc-per-node G -m fasd train ...` (DistributedDataParallel; --batch-size is
    the global batch)."""
    from fasd.config import load_registry
    from fasd.io_checks import ensure_writable
    from fasd.student_train.loss_terms import parse_loss_weights, weight_fields

    overrides = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
                 "warmup_epochs": warmup_epochs, "max_draws": max_draws, "lambda_ce": lambda_ce,
                 "lambda_kl": lambda_kl, "lambda_feat": lambda_feat, "lambda_triplet": lambda_triplet,
                 "lambda_head_aware": lambda_head_aware, "tau": tau, "margin": margin, "student": student,
                 "student_arch": student_arch, "input_size": input_size,
                 "layer_tap": layer_tap, "layers": _layers(layers) if layers else None, "views": views,
                 "lambda_rs2": lambda_rs2, "modality_dropout": modality_dropout,
                 "operating_point": operating_point, "augment": augment, "mixup": mixup, "cutmix": cutmix,
                 "smoothing": smoothing, "model_ema": model_ema, "repeated_aug": repeated_aug, "clip_grad": clip_grad,
                 "min_lr": min_lr, "kl_direction": kl_direction}
    for name, weight in weight_fields(parse_loss_weights(loss or [])).items():
        if overrides.get(name) is not None:
            raise FasdError(f"--loss and --{name.replace('_', '-')} both set that weight: give one")
        overrides[name] = weight
    if alpha is not None:
        if overrides["lambda_ce"] is not None or overrides["lambda_kl"] is not None:
            raise FasdError("--alpha sets --lambda-ce and --lambda-kl: give one or the other")
        _finite_in("--alpha", alpha, 0.0, 1.0)
        overrides |= {"lambda_ce": 1.0 - alpha, "lambda_kl": alpha}
    if beta is not None:
        if overrides["lambda_head_aware"] is not None:
            raise FasdError("--beta sets --lambda-head-aware: give one or the other")
        overrides["lambda_head_aware"] = beta
    if resume is None:  # a config or protocol mistake is named before the heavy imports (torch: seconds)
        registry = load_registry(config)
        protocol = _resolve_protocol(registry, split, sources, target)
    from fasd import distributed
    from fasd.device import default_workers
    from fasd.evaluate.metrics import format_report
    from fasd.student_train.run_config import TrainOptions
    from fasd.student_train.trainer import Trainer, existing_run, refuse_changed_options, resume_options

    if resume is not None:
        options = resume_options(resume)
        refuse_changed_options(options, {**overrides, "seed": seed if seed != 0 else None})
        run_dir = resume
    else:
        options = TrainOptions.for_recipe(
            recipe, protocol=protocol.name, sources=list(protocol.sources), target=protocol.target,
            config=str(registry.path), store=None if no_teacher else store, no_teacher=no_teacher, seed=seed,
            device=device, workers=default_workers() if workers is None else workers,
            student_weights=str(student_weights) if student_weights else None, stream_targets=stream_targets,
            **overrides)
        run_dir = out or Path("runs") / f"{protocol.name}-seed{seed}{'-noteacher' if no_teacher else ''}"
        existing = existing_run(run_dir, options)
        if existing is not None:
            resume, options = run_dir, existing
    ensure_writable(run_dir)  # refused before any frame is read, not after the first epoch
    with distributed.process_group() as ranks:
        metrics = Trainer(load_registry(options.config), options, run_dir).run(resume=resume is not None)
    if ranks.is_main:
        typer.echo(f"{options.protocol}: held-out {options.target} test (best epoch {metrics['best_epoch']})")
        typer.echo(format_report(metrics))
        typer.echo(f"run directory: {run_dir}")


@command("experiment")
def experiment(
    protocols: Annotated[Optional[str], typer.Option(help="Comma-separated protocols: holdout-X, A-to-B, "
                                                          "A,B-to-C,D (limited sources, C's and D's test splits "
                                                          "pooled; also written A+B-to-C+D), or intra-X (X's own "
                                                          "train / val / test splits, e.g. intra-oulu_p3_1: "
                                                          "OULU-NPU table in tables.md).")] = None,
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds; a cell reports mean ± std over them.")] = "0,1,2",
    recipe: Annotated[str, typer.Option(help="Training defaults of every cell: vlmkd (paper A), hatfas (paper C) "
                                             "or mmda (paper B: multimodal; every finished cell is also "
                                             "evaluated with depth, IR and both missing, and tables.md gets "
                                             "paper B's Tables 1-3); see `fasd train --help`.")] = "vlmkd",
    ablations: Annotated[str, typer.Option(help="Comma-separated: full, no-teacher, kl-only, kl-feat, kl-ssdg "
                                                "(hatfas: full, no-teacher); full-views replays the store's "
                                                "stored views (cache-teacher --views K).")] = "full",
    stores: Annotated[Optional[str], typer.Option(help="Teacher stores as name=PATH,... (e.g. flip=flip.zarr,"
                                                       "clip=clip.zarr); default: one store 'default' = --store.")
                      ] = None,
    reference: Annotated[Optional[list[str]], typer.Option(
        help="Fixed baseline ACER in %: NAME=VALUE or NAME@PROTOCOL=VALUE, repeatable "
             "(e.g. RA-TTA@oulu-to-replay=43.70); default: those recorded in OUT/plan.json.")] = None,
    out: Annotated[Path, typer.Option(help="Experiment folder: runs/, plan.json, failures.json, results.csv, "
                                           "summary.csv, tables.md, plots/.")] = Path("runs/exp"),
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and each cell's state; train nothing.")
                       ] = False,
    report: Annotated[Optional[Path], typer.Option(help="Only re-aggregate this experiment folder (no training).")
                      ] = None,
    config: Annotated[Optional[Path], typer.Option(help="fasd.toml (default: $FASD_CONFIG, ./fasd.toml).")] = None,
    store: Annotated[str, typer.Option(help="Teacher store when --stores is not given.")] = "teacher.zarr",
    epochs: Annotated[Optional[int], typer.Option(help=f"Training epochs (default: {_by_recipe('--epochs')}).")
                      ] = None,
    batch_size: Annotated[Optional[int], typer.Option(help=f"Frames per step (default: {_by_recipe('--batch-size')})."
                                                      )] = None,
    max_draws: Annotated[Optional[int], typer.Option(help="Draws per epoch (default 60000).")] = None,
    lr: Annotated[Optional[float], typer.Option(help=f"AdamW peak learning rate (default: {_by_recipe('--lr')}).")
                  ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    workers: Annotated[Optional[int], typer.Option(help="DataLoader workers (default: half the cores).")] = None,
    student_weights: Annotated[Optional[Path], typer.Option(
        help="torchvision mobilenet_v3_small ImageNet state dict (default: the local torch hub cache).")] = None,
) -> None:
    """Run protocols × ablations × teacher stores × seeds (resumable: finished cells are skipped), then write
    results.csv, tables.md (the paper's Tables 1, 3, 4, 5; intra-X protocols: HaTFAS' OULU-NPU table; --recipe
    mmda: paper B's Tables 1-3) and plots."""
    from fasd.experiment import (parse_assignments, parse_protocols, parse_references, parse_seeds,
                                 report_experiment, run_experiment)

    references = parse_references(parse_assignments(reference or [], "--reference"))
    if report is not None:
        for path in report_experiment(report, references or None):
            typer.echo(f"wrote {path}")
        return
    if not protocols:
        raise FasdError("name the protocols: --protocols oulu-to-replay,holdout-oulu,intra-oulu_p1,... "
                        "(or --report DIR)")
    overrides = {"store": store, "epochs": epochs, "batch_size": batch_size, "max_draws": max_draws, "lr": lr,
                 "device": device, "workers": workers,
                 "student_weights": str(student_weights) if student_weights else None}
    outcome = run_experiment(config, parse_protocols(protocols), parse_seeds(seeds), _csv(ablations),
                             parse_assignments([stores] if stores else [], "--stores"), out, overrides,
                             references, dry_run=dry_run, recipe=recipe)
    if outcome.failed:
        raise typer.Exit(1)


@command("demo")
def demo(
    out: Annotated[Path, typer.Option(help="Folder for data, teacher, store, runs, report.md, "
                                           "summary.json.")] = Path("runs/demo"),
    seeds: Annotated[int, typer.Option(help="Seeds per student (distilled and no-teacher).")] = 3,
    recipe: Annotated[str, typer.Option(help="vlmkd (the default: a MobileNetV3-Small teacher that saw 7 domains, "
                                             "as ONNX -> MobileNetV3-Small students that saw 2), hatfas (tiny "
                                             "DeiTs at 64 px, logits + layer tokens) or mmda (tiny MMDA CLIP on "
                                             "RGB, depth and IR -> one MobileNetV3-Small per modality; scored with "
                                             "all modalities and with depth missing). One recipe per --out folder."
                                        )] = "vlmkd",
) -> None:
    """The end-to-end default on synthetic data: synthetic domains (vlmkd: 8 x 900 frames of the shared world);
    the recipe's teacher trained on every domain but gamma, cached; students trained on alpha + beta with and
    without it (3 seeds each); everything evaluated on held-out gamma (mmda: also with depth missing); ONNX export
    and bench; report.md with mean ± std, Δ with its 95 % interval and a verdict generated from it. Re-running
    reuses finished stages."""
    from dataclasses import replace

    from fasd.demo import run_demo
    from fasd.demo.recipes import demo_recipe
    from fasd.demo.report import summary_lines

    summary = run_demo(out, replace(demo_recipe(recipe).budget, seeds=seeds), recipe=recipe, log=typer.echo)
    for line in summary_lines(summary):
        typer.echo(line)
    typer.echo(f"report: {out / 'report.md'}")
