"""Deployment commands: evaluate, export, bench, predict."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from fasd.cli.app import _csv, _detectors_help, _positive, _print_json, command, lazy_help
from fasd.errors import FasdError
from fasd.evaluate.metrics import OPERATING_POINT_HELP


@command("evaluate")
def evaluate(
    model: Annotated[Path, typer.Argument(help="A training checkpoint (best.pt) or an exported .onnx, .ort or "
                                                ".pte file.")],
    dataset: Annotated[Optional[str], typer.Option(help="Evaluate on this dataset's --split.")] = None,
    split: Annotated[Optional[str], typer.Option(help="With --dataset: the split (default test). Alone: a "
                                                      "protocol, evaluated on its target's test split.")] = None,
    config: Annotated[Optional[Path], typer.Option(help="fasd.toml (default: $FASD_CONFIG, ./fasd.toml).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics JSON object.")] = False,
    scores: Annotated[Optional[Path], typer.Option(help="Write frame_id,label,score (P(live)) per frame.")] = None,
    video_level: Annotated[bool, typer.Option("--video-level", help="Score videos by their frames' mean.")
                           ] = False,
    batch_size: Annotated[int, typer.Option(help="Frames per forward.")] = 256,
    missing: Annotated[Optional[str], typer.Option(help="Multimodal students: zero these modalities at test time "
                                                        "(Protocol 2), e.g. depth, ir or depth,ir.")] = None,
) -> None:
    """ISO/IEC 30107-3 metrics (APCER, BPCER, ACER, EER, HTER, AUC, TPR@FPR=1%) of a student on a split."""
    from fasd.config import load_registry
    from fasd.constants import SPLITS
    from fasd.data.open_source import open_target
    from fasd.evaluate.metrics import format_report
    from fasd.evaluate.scoring import check_video_ids, write_scores
    from fasd.export.evaluation import evaluate_scorer
    from fasd.export.runtimes import load_scorer

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
    source = open_target(registry, name)  # a protocol with several targets: their test splits pooled
    rows = source.table.rows_in_splits([split_name])
    if len(rows) == 0:
        raise FasdError(f"dataset '{name}' has no frames in split '{split_name}'")
    if video_level:
        check_video_ids(source, rows)
    missing_list = tuple(_csv(missing)) if missing is not None else ()
    if missing is not None and not missing_list:
        raise FasdError(f"--missing {missing!r} names no modality: give depth, ir or depth,ir, or drop --missing")
    rows, frame_scores, metrics = evaluate_scorer(scorer, source, rows, missing_list, batch_size, video_level,
                                                  desc=f"score {name}")
    if scores is not None:
        write_scores(scores, source, rows, frame_scores)
    if as_json:
        _print_json(metrics)
    else:
        typer.echo(f"{model} on {name}/{split_name}{' (video level)' if video_level else ''}"
                   + (f", {'/'.join(missing_list)} missing" if missing_list else ""))
        typer.echo(format_report(metrics))


def _formats_help() -> str:
    from fasd.export.formats import formats

    return "; ".join(f"{name}: {kind.help}" for name, kind in formats().items()) + "."


@command("export")
def export(
    checkpoint: Annotated[Path, typer.Argument(help="Training checkpoint (best.pt).")],
    fmt: Annotated[str, typer.Option("--format", help=lazy_help(_formats_help))] = "onnx",
    out: Annotated[Optional[Path], typer.Option(help="File to write (default student[-int8].<suffix>).")] = None,
    quantize: Annotated[Optional[str], typer.Option(help="int8: static post-training quantisation.")] = None,
    calibrate: Annotated[Optional[str], typer.Option(help="DATASET[:SPLIT] whose frames calibrate int8 "
                                                          "(default split train).")] = None,
    calibration_frames: Annotated[int, typer.Option(help="Calibration frames drawn from --calibrate.")] = 256,
    parity_data: Annotated[Optional[str], typer.Option(help="DATASET[:SPLIT] for the parity check (default: "
                                                            "--calibrate's dataset, test split; else random "
                                                            "inputs).")] = None,
    config: Annotated[Optional[Path], typer.Option(help="fasd.toml (default: $FASD_CONFIG, ./fasd.toml).")] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset (onnx, ort).")] = 17,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace --out when it is a model fasd export "
                                                                "wrote (never another file).")] = False,
    operating_point: Annotated[Optional[str], typer.Option(
        help=f"Decide at this operating point, chosen on the validation scores best.pt keeps: {OPERATING_POINT_HELP} "
             "(default: the threshold training chose, at its --operating-point).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Write an int8 file even when its decisions differ from "
                                                        "fp32's on the frames fp32 decides clearly (a warning "
                                                        "says so).")] = False,
    ort_platform: Annotated[Optional[str], typer.Option(
        help="--format ort: the CPU the .ort is laid out for: arm (phones; portable, the default) or amd64 (x86 "
             "only: ONNX Runtime's NCHWc layout, as fast as the .onnx there).")] = None,
) -> None:
    """Export encoder + logit head with its metadata, verify parity in the format's runtime, then write it."""
    from fasd.export.export import export_model

    _positive("--calibration-frames", calibration_frames)
    from fasd.export.noise import filtered_stderr

    with filtered_stderr():  # coremltools', ExecuTorch's and onnxruntime's known-harmless lines
        report = export_model(checkpoint, out, fmt, quantize, calibrate, calibration_frames, parity_data, config,
                              opset, overwrite, operating_point, force, ort_platform)
    typer.echo(report.describe())


@command("bench")
def bench(
    model: Annotated[Path, typer.Argument(help="Exported .onnx, .ort or .pte file, or a checkpoint (PyTorch).")],
    runs: Annotated[int, typer.Option(help="Timed runs.")] = 1000,
    warmup: Annotated[int, typer.Option(help="Untimed warm-up runs.")] = 100,
    batch: Annotated[int, typer.Option(help="Images per run.")] = 1,
    threads: Annotated[Optional[int], typer.Option(help="The runtime's intra-op threads (default: its own).")
                       ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """CPU latency (median, p95, p99) and throughput in the model's own runtime, as phone benchmarks report."""
    from fasd.export.latency import bench_model, format_latency

    result = bench_model(model, runs=runs, warmup=warmup, batch=batch, threads=threads)
    _print_json(result) if as_json else typer.echo(format_latency(result))


@command("predict")
def predict(
    model: Annotated[Path, typer.Argument(help="Exported .onnx, .ort or .pte file, or a training checkpoint.")],
    inputs: Annotated[list[Path], typer.Argument(help="Photos, videos or folders of them (camera frames when the "
                                                      "model records a crop policy or --detector is given; else "
                                                      "face crops).")],
    threshold: Annotated[Optional[float], typer.Option(
        help="Live when P(live) >= threshold (default: the model's validation threshold, else 0.5).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    depth: Annotated[Optional[Path], typer.Option(help="Multimodal students: folder of depth images named like "
                                                       "the RGB ones (absent: depth missing, the zero frame).")
                     ] = None,
    ir: Annotated[Optional[Path], typer.Option(help="Multimodal students: folder of IR images named like the RGB "
                                                    "ones (absent: IR missing).")] = None,
    no_detect: Annotated[bool, typer.Option("--no-detect", help="The inputs are face crops already: resize and "
                                                                "score them (the default for models without a crop "
                                                                "policy).")] = False,
    detector: Annotated[Optional[str], typer.Option(help=lazy_help(lambda: _detectors_help(
        "Face detector (default: the one the model's crop policy names; a model without a policy detects only "
        "when this is given)")))] = None,
    detector_weights: Annotated[Optional[str], typer.Option(
        help="The detector's weights: yunet a .onnx; retinaface MODEL.caffemodel[,deploy.prototxt].")] = None,
    save_crops: Annotated[Optional[Path], typer.Option(help="Write each model input (the face crop) as PNG into "
                                                            "this new or empty folder, named after its input.")
                          ] = None,
    frames_per_video: Annotated[int, typer.Option(help="Video files: frames scored, spread evenly; the video's "
                                                       "P(live) is their mean over frames with a face.")] = 16,
) -> None:
    """Print P(live) and the decision (live, spoof, or no-face) for each photo, video or face crop."""
    from fasd.export.predict import format_predictions, predict_paths

    rows = predict_paths(model, inputs, threshold, folders={"depth": depth, "ir": ir}, no_detect=no_detect,
                         detector=detector, detector_weights=detector_weights, save_crops=save_crops,
                         frames_per_video=frames_per_video)
    _print_json(rows) if as_json else typer.echo(format_predictions(rows))
