"""The ``fasd`` command line: parses options and calls the modules that do the work."""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer

from fasd.errors import FasdError

app = typer.Typer(
    help="fasd: distil a vision-language face anti-spoofing teacher (FLIP-MCL, CLIP ViT-B/16) into a "
         "phone-sized MobileNetV3-Small student. Labels: 0 = spoof, 1 = live.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


def command(name: str) -> Callable:
    """Register a command whose user errors print one line (no traceback) and exit 2."""
    def decorate(func: Callable) -> Callable:
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            try:
                return func(*args, **kwargs)
            except FasdError as exc:
                typer.echo(f"fasd {name}: error: {exc}", err=True)
                raise typer.Exit(2) from None
            except KeyboardInterrupt:
                typer.echo(f"fasd {name}: interrupted; completed work is kept, re-run the same command to "
                           f"resume", err=True)
                raise typer.Exit(130) from None
        return app.command(name)(wrapper)
    return decorate


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _shard(value: Optional[str]) -> tuple[int, int]:
    """``--shard I/N``, else torchrun's RANK/WORLD_SIZE, else the whole job."""
    if value is None:
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    try:
        index, count = (int(v) for v in value.split("/"))
    except ValueError:
        raise FasdError(f"--shard must look like I/N (e.g. 0/4), got '{value}'") from None
    if count < 1 or not 0 <= index < count:
        raise FasdError(f"--shard {value}: need 0 <= I < N")
    return index, count


def _positive(name: str, value: float) -> None:
    if value <= 0:
        raise FasdError(f"{name} must be > 0, got {value}")


def _print_json(obj: object) -> None:
    typer.echo(json.dumps(obj, indent=2, default=float))


@command("synth")
def synth(
    out_dir: Annotated[Path, typer.Argument(help="Folder for the HDF5 packs and fasd.toml.")],
    domains: Annotated[int, typer.Option(help="Number of synthetic domains (cameras/attack styles).")] = 3,
    frames: Annotated[int, typer.Option(help="Frames per domain over all splits.")] = 600,
    size: Annotated[int, typer.Option(help="Image side in pixels.")] = 112,
    seed: Annotated[int, typer.Option(help="Random seed; the output is deterministic for a seed.")] = 0,
) -> None:
    """Write a synthetic FAS benchmark (one HDF5 pack per domain + fasd.toml); needs no download."""
    from fasd.data.synth import synthesize

    config = synthesize(out_dir, domains=domains, frames=frames, size=size, seed=seed)
    typer.echo(f"wrote {domains} synthetic domain(s) and {config}")


@command("cache-teacher")
def cache_teacher(
    dataset: Annotated[str, typer.Option(help="Dataset name registered in fasd.toml.")],
    config: Annotated[Optional[Path], typer.Option(help="fasd.toml (default: $FASD_CONFIG, ./fasd.toml).")] = None,
    store: Annotated[str, typer.Option(help="Teacher store: a folder or fsspec URL (s3://...).")] = "teacher.zarr",
    teacher: Annotated[str, typer.Option(help="flip-mcl (FLIP checkpoint) or clip (OpenAI CLIP state dict).")
                       ] = "flip-mcl",
    checkpoint: Annotated[Optional[Path], typer.Option(help="Teacher checkpoint file (never downloaded).")] = None,
    prompts: Annotated[Optional[Path], typer.Option(
        help='JSON {"spoof": [...], "live": [...]} overriding FLIP\'s prompt ensemble.')] = None,
    centroid_mode: Annotated[str, typer.Option(help="flip (mean raw embeddings) or clip (mean of unit ones).")
                             ] = "flip",
    splits: Annotated[str, typer.Option(help="Comma-separated splits to cache.")] = "train,val,test",
    batch_size: Annotated[int, typer.Option(help="Frames per teacher forward.")] = 256,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    workers: Annotated[Optional[int], typer.Option(help="DataLoader decode workers (default: half the cores, "
                                                        "at most 8).")] = None,
    shard: Annotated[Optional[str], typer.Option(help="I/N: cache every N-th chunk starting at I (default: "
                                                      "torchrun's RANK/WORLD_SIZE).")] = None,
    chunk_rows: Annotated[int, typer.Option(help="Rows per Zarr chunk (the unit of resume).")] = 4096,
    overwrite: Annotated[bool, typer.Option(help="Replace a store of another teacher / a changed dataset.")
                         ] = False,
    strict: Annotated[bool, typer.Option(help="Fail on the first unreadable frame instead of counting it.")
                      ] = False,
    trust_checkpoint: Annotated[bool, typer.Option(help="Allow arbitrary pickled objects in the checkpoint.")
                                ] = False,
) -> None:
    """Run the frozen teacher once over a dataset and write CLS features + logits into the Zarr store.

    Resumable: a killed job continues at the first unfinished chunk; a complete job does no teacher work.
    """
    from fasd import distributed
    from fasd.config import load_registry
    from fasd.constants import SPLITS
    from fasd.data.open_source import open_source
    from fasd.device import default_workers
    from fasd.teacher_cache.job import CacheOptions, run_cache
    from fasd.teacher_cache.prompts import load_prompts
    from fasd.teacher_cache.teacher import TEACHER_KINDS, load_teacher

    if teacher not in TEACHER_KINDS:
        raise FasdError(f"unknown --teacher '{teacher}'; valid: {', '.join(TEACHER_KINDS)}")
    if checkpoint is None:
        raise FasdError("--checkpoint FILE is required: fasd never downloads teacher weights "
                        "(build one with `fasd teacher-finetune` or use FLIP's released checkpoint)")
    split_list = _csv(splits)
    unknown = [s for s in split_list if s not in SPLITS]
    if unknown or not split_list:
        raise FasdError(f"--splits {splits}: valid splits are {', '.join(SPLITS)}")
    _positive("--batch-size", batch_size)
    _positive("--chunk-rows", chunk_rows)
    shard_index, shard_count = _shard(shard)
    source = open_source(load_registry(config).dataset(dataset))
    loaded = load_teacher(teacher, checkpoint, load_prompts(prompts), centroid_mode, trust_checkpoint)
    options = CacheOptions(splits=tuple(split_list), batch_size=batch_size, device=device,
                           workers=default_workers() if workers is None else workers, shard=shard_index,
                           num_shards=shard_count, chunk_rows=chunk_rows, overwrite=overwrite, strict=strict)
    with distributed.process_group() as ranks:
        report = run_cache(source, loaded, store, options)
    if not ranks.is_main:
        return
    state = "complete" if report.completed else "incomplete (other shards or a re-run will finish it)"
    if report.chunks_written == 0:
        typer.echo(f"{dataset}: nothing to do, all {report.chunks} chunk(s) of this shard already cached; "
                   f"dataset {state}")
    else:
        typer.echo(f"{dataset}: cached {report.frames_computed} frames in {report.chunks_written} chunk(s), "
                   f"{report.frames_per_s:.1f} frames/s; {len(report.unreadable)} unreadable; dataset {state}")


@command("inspect")
def inspect(
    store: Annotated[str, typer.Argument(help="Teacher store folder or fsspec URL.")],
    dataset: Annotated[Optional[str], typer.Option(help="Only this dataset.")] = None,
    verify: Annotated[int, typer.Option(help="Recompute N random frames per dataset online (needs "
                                             "--checkpoint and --config).")] = 0,
    checkpoint: Annotated[Optional[Path], typer.Option(help="The teacher checkpoint, for --verify.")] = None,
    config: Annotated[Optional[Path], typer.Option(help="fasd.toml, for --verify's frame sources.")] = None,
    trust_checkpoint: Annotated[bool, typer.Option(help="Allow arbitrary pickled objects in the checkpoint.")
                                ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
) -> None:
    """Summarise a teacher store: teacher, completion, label/split counts, integrity, size, teacher metrics."""
    from fasd.store_schema.inspect import format_summary, summarize_store
    from fasd.store_schema.store import open_store

    opened = open_store(store)
    if dataset is not None:
        opened.dataset(dataset)
    summary = summarize_store(opened, dataset)
    if verify:
        if checkpoint is None:
            raise FasdError("--verify N needs --checkpoint FILE (the teacher the store was cached with)")
        from fasd.config import load_registry
        from fasd.data.open_source import open_source
        from fasd.teacher_cache.verify import verify_frames

        registry = load_registry(config)
        sources = [open_source(registry.dataset(name)) for name in summary["datasets"]]
        summary["verify"] = verify_frames(opened, sources, checkpoint, verify, trust_checkpoint=trust_checkpoint)
    if as_json:
        _print_json(summary)
        return
    typer.echo(format_summary(summary))
    for name, result in summary.get("verify", {}).items():
        typer.echo(f"verify [{name}] {result['frames']} frames: worst cosine {result['worst_cosine']:.6f}, "
                   f"max |Δlogit| {result['max_logit_diff']:.4g}")


def _resolve_protocol(registry, split: Optional[str], sources: Optional[str], target: Optional[str]):
    if split and (sources or target):
        raise FasdError("give either --split PROTOCOL or --sources A,B --target C, not both")
    if split:
        return registry.protocol(split)
    if sources and target:
        return registry.explicit_protocol(_csv(sources), target)
    raise FasdError("name the protocol: --split holdout-X / A-to-B, or --sources A,B --target C")


@command("train")
def train(
    split: Annotated[Optional[str], typer.Option(help="Protocol: holdout-X (train on the other protocol "
                                                      "domains, test on X) or A-to-B.")] = None,
    sources: Annotated[Optional[str], typer.Option(help="Comma-separated source datasets (with --target).")
                       ] = None,
    target: Annotated[Optional[str], typer.Option(help="Held-out target dataset (with --sources).")] = None,
    config: Annotated[Optional[Path], typer.Option(help="fasd.toml (default: $FASD_CONFIG, ./fasd.toml).")] = None,
    store: Annotated[str, typer.Option(help="Teacher store written by cache-teacher: folder or fsspec URL "
                                            "(s3://...).")] = "teacher.zarr",
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 15,
    batch_size: Annotated[int, typer.Option(help="Frames per step.")] = 64,
    lr: Annotated[float, typer.Option(help="AdamW peak learning rate.")] = 1e-3,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = 1e-4,
    max_draws: Annotated[int, typer.Option(help="Domain-balanced draws per epoch (at most the train size).")
                         ] = 60000,
    lambda_kl: Annotated[float, typer.Option(help="Weight of the KL term (teacher logits).")] = 1.0,
    lambda_feat: Annotated[float, typer.Option(help="Weight of the feature-alignment term.")] = 1.0,
    lambda_triplet: Annotated[float, typer.Option(help="Weight of the SSDG asymmetric triplet term.")] = 0.5,
    tau: Annotated[float, typer.Option(help="KL temperature.")] = 4.0,
    margin: Annotated[float, typer.Option(help="Triplet margin.")] = 0.5,
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
) -> None:
    """Distil the student from the cached teacher targets; evaluate the best checkpoint on the target.

    Several GPUs: `torchrun --nproc-per-node G -m fasd train ...` (DistributedDataParallel; --batch-size is
    the global batch)."""
    from fasd import distributed
    from fasd.config import load_registry
    from fasd.device import default_workers
    from fasd.evaluate.metrics import format_report
    from fasd.student_train.run_config import TrainOptions
    from fasd.student_train.trainer import Trainer, resume_options

    if resume is not None:
        options = resume_options(resume)
        run_dir = resume
    else:
        registry = load_registry(config)
        protocol = _resolve_protocol(registry, split, sources, target)
        options = TrainOptions(
            protocol=protocol.name, sources=list(protocol.sources), target=protocol.target,
            config=str(registry.path), store=None if no_teacher else store, epochs=epochs, batch_size=batch_size,
            lr=lr, weight_decay=weight_decay, max_draws=max_draws, lambda_kl=lambda_kl, lambda_feat=lambda_feat,
            lambda_triplet=lambda_triplet, tau=tau, margin=margin, no_teacher=no_teacher, seed=seed,
            device=device, workers=default_workers() if workers is None else workers,
            student_weights=str(student_weights) if student_weights else None, stream_targets=stream_targets)
        run_dir = out or Path("runs") / f"{protocol.name}-seed{seed}{'-noteacher' if no_teacher else ''}"
    with distributed.process_group() as ranks:
        metrics = Trainer(load_registry(options.config), options, run_dir).run(resume=resume is not None)
    if ranks.is_main:
        typer.echo(f"{options.protocol}: held-out {options.target} test (best epoch {metrics['best_epoch']})")
        typer.echo(format_report(metrics))
        typer.echo(f"run directory: {run_dir}")


@command("evaluate")
def evaluate(
    model: Annotated[Path, typer.Argument(help="A training checkpoint (best.pt) or an exported .onnx file.")],
    dataset: Annotated[Optional[str], typer.Option(help="Evaluate on this dataset's --split.")] = None,
    split: Annotated[Optional[str], typer.Option(help="With --dataset: the split (default test). Alone: a "
                                                      "protocol, evaluated on its target's test split.")] = None,
    config: Annotated[Optional[Path], typer.Option(help="fasd.toml (default: $FASD_CONFIG, ./fasd.toml).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics JSON object.")] = False,
    scores: Annotated[Optional[Path], typer.Option(help="Write frame_id,label,score (P(live)) per frame.")] = None,
    video_level: Annotated[bool, typer.Option("--video-level", help="Score videos by their frames' mean.")
                           ] = False,
    batch_size: Annotated[int, typer.Option(help="Frames per forward.")] = 256,
) -> None:
    """ISO/IEC 30107-3 metrics (APCER, BPCER, ACER, EER, HTER, AUC, TPR@FPR=1%) of a student on a split."""
    from fasd.config import load_registry
    from fasd.constants import SPLITS
    from fasd.data.open_source import open_source
    from fasd.evaluate.metrics import format_report
    from fasd.evaluate.scoring import metrics_for, score_rows, write_scores
    from fasd.export.onnx_model import load_scorer

    registry = load_registry(config)
    if dataset is not None:
        split_name = split or "test"
        if split_name not in SPLITS:
            raise FasdError(f"--split {split_name}: with --dataset, use one of {', '.join(SPLITS)}")
        name = dataset
    elif split is not None:
        name, split_name = registry.protocol(split).target, "test"
    else:
        raise FasdError("name what to evaluate: --dataset NAME [--split test] or --split PROTOCOL")
    _positive("--batch-size", batch_size)
    scorer = load_scorer(model)
    source = open_source(registry.dataset(name))
    rows = source.table.rows_in_splits([split_name])
    if len(rows) == 0:
        raise FasdError(f"dataset '{name}' has no frames in split '{split_name}'")
    frame_scores = score_rows(scorer.p_live, source, rows, batch_size=batch_size, desc=f"score {name}")
    if scores is not None:
        write_scores(scores, source, rows, frame_scores)
    metrics = metrics_for(source, rows, frame_scores, video=video_level,
                          val_threshold=scorer.metadata.get("eer_threshold"))
    if as_json:
        _print_json(metrics)
    else:
        typer.echo(f"{model} on {name}/{split_name}{' (video level)' if video_level else ''}")
        typer.echo(format_report(metrics))


@command("export")
def export(
    checkpoint: Annotated[Path, typer.Argument(help="Training checkpoint (best.pt).")],
    out: Annotated[Path, typer.Option(help="ONNX file to write.")] = Path("student.onnx"),
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 17,
) -> None:
    """Export encoder + logit head to ONNX (dynamic batch), check it, and verify parity with PyTorch."""
    from fasd.export.onnx_export import export_onnx

    typer.echo(export_onnx(checkpoint, out, opset).format())


@command("bench")
def bench(
    model: Annotated[Path, typer.Argument(help="Exported student .onnx file.")],
    runs: Annotated[int, typer.Option(help="Timed runs.")] = 1000,
    warmup: Annotated[int, typer.Option(help="Untimed warm-up runs.")] = 100,
    batch: Annotated[int, typer.Option(help="Images per run.")] = 1,
    threads: Annotated[Optional[int], typer.Option(help="ONNX Runtime intra-op threads (default: ORT's).")
                       ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """ONNX Runtime CPU latency (median, p95, p99) and throughput, reported the way phone benchmarks are."""
    from fasd.export.latency import bench_onnx, format_latency

    result = bench_onnx(model, runs=runs, warmup=warmup, batch=batch, threads=threads)
    _print_json(result) if as_json else typer.echo(format_latency(result))


@command("predict")
def predict(
    model: Annotated[Path, typer.Argument(help="Exported .onnx file or training checkpoint.")],
    inputs: Annotated[list[Path], typer.Argument(help="Face-crop images or folders of them.")],
    threshold: Annotated[Optional[float], typer.Option(
        help="Live when P(live) >= threshold (default: the model's EER threshold, else 0.5).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print P(live) and the live/spoof decision for each image."""
    from fasd.export.predict import format_predictions, predict_paths

    rows = predict_paths(model, inputs, threshold)
    _print_json(rows) if as_json else typer.echo(format_predictions(rows))


@command("ingest")
def ingest(
    kind: Annotated[str, typer.Argument(help="Native layout: oulu, replay, celeba or mcio.")],
    root: Annotated[Path, typer.Option(help="The dataset as distributed (its top folder).")],
    out: Annotated[Path, typer.Option(help="HDF5 frame pack to write.")],
    size: Annotated[int, typer.Option(help="Side of the square face crops.")] = 112,
    frames_per_video: Annotated[Optional[int], typer.Option(
        help="Frames sampled evenly per video among annotated frames (default: all).")] = None,
    protocol: Annotated[Optional[str], typer.Option(help="OULU protocol: Protocol_1, Protocol_2, Protocol_3/K, "
                                                         "Protocol_4/K.")] = None,
    margin: Annotated[Optional[float], typer.Option(help="Extra crop border, as a fraction of the face size.")
                      ] = None,
    workers: Annotated[int, typer.Option(help="Parallel decoding processes.")] = 1,
    register: Annotated[Optional[str], typer.Option(help="Register the pack under this name in --config.")
                        ] = None,
    config: Annotated[Path, typer.Option(help="fasd.toml to register the pack in.")] = Path("fasd.toml"),
) -> None:
    """Turn a native dataset layout (videos + annotations, or images + labels) into an HDF5 frame pack."""
    from fasd.config import register_dataset
    from fasd.data.ingest import DEFAULT_MARGIN, run_ingest

    summary = run_ingest(kind, root, out, size=size, frames_per_video=frames_per_video, protocol=protocol,
                         workers=workers, margin=DEFAULT_MARGIN if margin is None else margin)
    typer.echo(summary.format())
    if register:
        register_dataset(config, register, "hdf5", out)
        typer.echo(f"registered '{register}' in {config}")


@command("teacher-finetune")
def teacher_finetune(
    sources: Annotated[str, typer.Option(help="Comma-separated source datasets to fine-tune on.")],
    out: Annotated[Path, typer.Option(help="Checkpoint to write (FLIP format, read by cache-teacher).")],
    config: Annotated[Optional[Path], typer.Option(help="fasd.toml (default: $FASD_CONFIG, ./fasd.toml).")] = None,
    arch: Annotated[Optional[str], typer.Option(help="open_clip ViT architecture with random weights, e.g. "
                                                     "fasd-tiny-clip (CPU-sized) or ViT-B-16.")] = None,
    init: Annotated[Optional[Path], typer.Option(help="Start from this OpenAI-format (or FLIP) CLIP checkpoint.")
                    ] = None,
    prompts: Annotated[Optional[Path], typer.Option(help='JSON {"spoof": [...], "live": [...]}.')] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs (default: the module's tuned default).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Frames per step.")] = None,
    lr: Annotated[Optional[float], typer.Option(help="AdamW learning rate (default: 5e-4 for random weights, "
                                                    "1e-6 (FLIP's) with --init).")] = None,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = 0.05,
    centroid_mode: Annotated[str, typer.Option(help="flip or clip prompt centroids.")] = "flip",
    max_frames_per_epoch: Annotated[Optional[int], typer.Option(help="Cap the draws per epoch.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    workers: Annotated[int, typer.Option(help="DataLoader workers.")] = 0,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    trust_checkpoint: Annotated[bool, typer.Option(help="Allow arbitrary pickled objects in --init.")] = False,
) -> None:
    """FLIP-style fine-tuning of a CLIP teacher: image tower trained against frozen prompt centroids."""
    from fasd.teacher_cache.finetune import finetune_teacher
    from fasd.teacher_cache.prompts import load_prompts

    extra = {k: v for k, v in {"epochs": epochs, "batch_size": batch_size}.items() if v is not None}
    summary = finetune_teacher(config, _csv(sources), out, init=init, arch=arch, prompts=load_prompts(prompts),
                               centroid_mode=centroid_mode, lr=lr, weight_decay=weight_decay,
                               max_frames_per_epoch=max_frames_per_epoch, device=device, workers=workers, seed=seed,
                               trust_checkpoint=trust_checkpoint, **extra)
    typer.echo(json.dumps(summary, indent=2, default=str))


@command("demo")
def demo(
    out: Annotated[Path, typer.Option(help="Folder for data, teacher, store, runs, report.md, summary.json.")
                   ] = Path("runs/demo"),
) -> None:
    """The end-to-end default on synthetic data: fine-tune teacher, cache, distil vs no-teacher, evaluate,
    export, bench, report. Re-running reuses finished stages."""
    from fasd.demo import run_demo

    summary = run_demo(out, log=typer.echo)
    d, p = summary["distilled"]["at_eer"]["acer"], summary["no_teacher"]["at_eer"]["acer"]
    typer.echo(f"held-out ACER@EER: distilled {100 * d:.2f} %, no teacher {100 * p:.2f} %, teacher "
               f"{100 * summary['teacher']['at_eer']['acer']:.2f} %; ONNX {summary['onnx']['bytes'] / 1e6:.2f} MB, "
               f"{summary['onnx']['median_ms']:.2f} ms median; report: {out / 'report.md'}")


@command("experiment")
def experiment(
    protocols: Annotated[Optional[str], typer.Option(help="Comma-separated protocols (holdout-X, A-to-B).")] = None,
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds; a cell reports mean ± std over them.")] = "0,1,2",
    ablations: Annotated[str, typer.Option(help="Comma-separated: full, no-teacher, kl-only, kl-feat, kl-ssdg.")
                         ] = "full",
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
    epochs: Annotated[Optional[int], typer.Option(help="Training epochs (default 15).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Frames per step (default 64).")] = None,
    max_draws: Annotated[Optional[int], typer.Option(help="Draws per epoch (default 60000).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="AdamW peak learning rate (default 1e-3).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    workers: Annotated[Optional[int], typer.Option(help="DataLoader workers (default: half the cores).")] = None,
    student_weights: Annotated[Optional[Path], typer.Option(
        help="torchvision mobilenet_v3_small ImageNet state dict (default: the local torch hub cache).")] = None,
) -> None:
    """Run protocols × ablations × teacher stores × seeds (resumable: finished cells are skipped), then write
    results.csv, tables.md (the paper's Tables 1, 3, 4, 5) and plots."""
    from fasd.experiment import (parse_assignments, parse_references, parse_seeds, report_experiment,
                                 run_experiment)

    references = parse_references(parse_assignments(reference or [], "--reference"))
    if report is not None:
        for path in report_experiment(report, references or None):
            typer.echo(f"wrote {path}")
        return
    if not protocols:
        raise FasdError("name the protocols: --protocols oulu-to-replay,holdout-oulu,... (or --report DIR)")
    overrides = {"store": store, "epochs": epochs, "batch_size": batch_size, "max_draws": max_draws, "lr": lr,
                 "device": device, "workers": workers,
                 "student_weights": str(student_weights) if student_weights else None}
    outcome = run_experiment(config, _csv(protocols), parse_seeds(seeds), _csv(ablations),
                             parse_assignments([stores] if stores else [], "--stores"), out, overrides,
                             references, dry_run=dry_run)
    if outcome.failed:
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
