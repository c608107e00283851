"""Deployment commands: evaluate, export, bench, predict."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from fasd.cli.app import _positive, _print_json, command
from fasd.errors import FasdError


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
