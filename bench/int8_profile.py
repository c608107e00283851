"""fp32 vs int8 on this CPU: ONNX Runtime's own profiler, per operator type, for fasd's int8 and the alternatives.

One MobileNetV3-Small student (random weights, BN statistics of synthetic frames: latency does not depend on what
it learned) is exported to fp32 ONNX; int8 variants are made by onnxruntime.quantization from the same
``quant_pre_process``-ed graph and the same calibration frames: QDQ per-channel (what `fasd export --quantize int8`
writes), QOperator per-channel, QDQ per-tensor, and QDQ with only Conv/Gemm quantised. Each file is timed batch 1,
one thread, interleaved rounds (median of round medians), then profiled (mean ms per run per operator type,
median over interleaved rounds).
With --executorch the .pte fp32 and int8 files are timed the same way (`fasd bench`'s bench_model).

    python bench/int8_profile.py [--runs 300] [--rounds 5] [--executorch]
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from fasd.export.deployable import load_deployable
from fasd.export.export import export_model
from fasd.export.formats.onnx import _Frames, onnx_proto
from fasd.export.frames import dataset_frames
from fasd.export.latency import bench_model, cpu_name

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import bn_calibrated_student  # noqa: E402  (the export tests' student)


def _variants(checkpoint: Path, config: Path, root: Path) -> dict[str, Path]:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    deployable = load_deployable(checkpoint)
    fp32 = root / "fp32.onnx"
    fp32.write_bytes(onnx_proto(deployable, 17).SerializeToString())
    prepared = root / "prepared.onnx"
    quant_pre_process(str(fp32), str(prepared))
    frames, _ = dataset_frames("alpha", 128, "train", config)
    choices = {"int8 QDQ per-channel (fasd)": dict(quant_format=QuantFormat.QDQ, per_channel=True),
               "int8 QOperator per-channel": dict(quant_format=QuantFormat.QOperator, per_channel=True),
               "int8 QDQ per-tensor": dict(quant_format=QuantFormat.QDQ, per_channel=False),
               "int8 QDQ Conv/Gemm only": dict(quant_format=QuantFormat.QDQ, per_channel=True,
                                               op_types_to_quantize=["Conv", "Gemm"])}
    files = {"fp32": fp32}
    for i, (name, kwargs) in enumerate(choices.items()):
        files[name] = root / f"int8-{i}.onnx"
        quantize_static(str(prepared), str(files[name]), _Frames("image", frames), weight_type=QuantType.QInt8,
                        activation_type=QuantType.QUInt8, calibrate_method=CalibrationMethod.MinMax, **kwargs)
    return files


def _session(path: Path, profile: bool = False) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    if profile:
        options.enable_profiling = True
        options.profile_file_prefix = str(path.with_suffix(""))
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _medians(files: dict[str, Path], runs: int, rounds: int) -> dict[str, float]:
    """Median of the per-round medians, rounds interleaved over the files (load changes hit every file alike)."""
    image = {"image": np.random.default_rng(0).standard_normal((1, 3, 112, 112), dtype=np.float32)}
    sessions = {name: _session(path) for name, path in files.items()}
    per_round: dict[str, list[float]] = {name: [] for name in files}
    for _ in range(rounds):
        for name, session in sessions.items():
            for _ in range(max(10, runs // 10)):
                session.run(None, image)
            times = np.empty(runs)
            for i in range(runs):
                start = time.perf_counter()
                session.run(None, image)
                times[i] = time.perf_counter() - start
            per_round[name].append(1e3 * float(np.median(times)))
    return {name: float(np.median(values)) for name, values in per_round.items()}


def _profile(path: Path, runs: int) -> dict[str, tuple[float, int]]:
    """Mean ms per run and node count per operator type, from ONNX Runtime's profiler."""
    session = _session(path, profile=True)
    image = {"image": np.random.default_rng(0).standard_normal((1, 3, 112, 112), dtype=np.float32)}
    for _ in range(runs):
        session.run(None, image)
    events = json.loads(Path(session.end_profiling()).read_text())
    total: collections.Counter = collections.Counter()
    count: collections.Counter = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            total[event["args"]["op_name"]] += event["dur"]
            count[event["args"]["op_name"]] += 1
    return {op: (us / runs / 1e3, count[op] // runs) for op, us in total.most_common()}


def _median_profiles(files: dict[str, Path], runs: int, rounds: int) -> dict[str, dict[str, tuple[float, int]]]:
    """Per file and operator type, the median over interleaved rounds of the profiled ms per run (other load hits
    every file alike, as in _medians)."""
    rounds_of: dict[str, list[dict]] = {name: [] for name in files}
    for _ in range(rounds):
        for name, path in files.items():
            rounds_of[name].append(_profile(path, runs))
    return {name: {op: (float(np.median([r.get(op, (0.0, 0))[0] for r in profiles])), profiles[0][op][1])
                   for op in profiles[0]} for name, profiles in rounds_of.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=300, help="timed runs per round and file")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--executorch", action="store_true", help="also time .pte fp32 vs int8 (minutes)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        checkpoint, config = bn_calibrated_student(root, frames=200, size=112, seed=0, calibration=128)
        files = _variants(checkpoint, config, root)
        medians = _medians(files, args.runs, args.rounds)
        profiles = _median_profiles(files, max(20, args.runs // 5), args.rounds)
        print(f"{cpu_name()}, onnxruntime {ort.__version__}, batch 1, 1 thread, {args.rounds} interleaved rounds of "
              f"{args.runs} runs")
        print("| file | nodes | size | median ms | vs fp32 |\n|---|---|---|---|---|")
        for name, path in files.items():
            nodes = len(onnx.load(str(path)).graph.node)
            print(f"| {name} | {nodes} | {path.stat().st_size / 1e6:.2f} MB | {medians[name]:.3f} | "
                  f"{medians[name] / medians['fp32']:.2f} |")
        ops = sorted({op for profile in profiles.values() for op in profile},
                     key=lambda op: -max(p.get(op, (0, 0))[0] for p in profiles.values()))
        print("\nper operator type, ms per run (profiler) x nodes run:\n")
        print("| operator | " + " | ".join(files) + " |\n|---|" + "---|" * len(files))
        for op in ops:
            cells = [f"{p[op][0]:.3f} ×{p[op][1]}" if op in p else "–" for p in profiles.values()]
            print(f"| {op} | " + " | ".join(cells) + " |")
        totals = [f"{sum(v[0] for v in p.values()):.3f}" for p in profiles.values()]
        print("| **total (profiled)** | " + " | ".join(totals) + " |")
        if args.executorch:
            pte = {"fp32": export_model(checkpoint, root / "s.pte", "executorch", config=config).path,
                   "int8": export_model(checkpoint, root / "s-int8.pte", "executorch", quantize="int8",
                                        calibrate="alpha", calibration_frames=128, config=config, force=True).path}
            for name, path in pte.items():
                result = bench_model(path, runs=args.runs * args.rounds, warmup=max(10, args.runs // 10), batch=1,
                                     threads=1, progress=False)
                print(f".pte {name}: median {result['median_ms']:.3f} ms, p95 {result['p95_ms']:.3f} ms "
                      f"({result['runtime']}, {path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    sys.exit(main())
