"""CPU latency of an exported student in its own runtime (ONNX Runtime, ExecuTorch) or of a checkpoint in
PyTorch: fixed warm-up, then every run timed on its own."""

from __future__ import annotations

import platform
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fasd.errors import FasdError
from fasd.export.metadata import input_shape
from fasd.export.runtimes import load_scorer


def cpu_name() -> str:
    """The CPU model as the OS names it (Linux /proc/cpuinfo, else platform)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.lower().startswith(("model name", "hardware")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def bench_model(path: Path, runs: int = 1000, warmup: int = 100, batch: int = 1, threads: int | None = None,
               progress: bool = True) -> dict:
    """Time ``runs`` calls of the model's forward in its runtime on one fixed random batch after ``warmup``
    untimed calls (the runtime alone: the scoring that follows, live_score, is the same for every runtime).

    ``threads``: the runtime's intra-op threads (None: its default). Latencies in milliseconds per
    call (per batch); throughput in images per second from the mean.
    """
    for name, value, minimum in (("runs", runs, 1), ("warmup", warmup, 0), ("batch", batch, 1)):
        if value < minimum:
            raise FasdError(f"--{name} must be >= {minimum}, got {value}")
    model = load_scorer(path, threads=threads)
    shape = input_shape(model.metadata)
    images = np.random.default_rng(0).standard_normal((batch, *shape), dtype=np.float32)
    for _ in range(warmup):
        model.forward(images)
    times_ns = np.empty(runs, dtype=np.int64)
    for i in tqdm(range(runs), desc=f"bench {Path(path).name}", unit="run", disable=not progress, leave=False):
        start = time.perf_counter_ns()
        model.forward(images)
        times_ns[i] = time.perf_counter_ns() - start
    ms = times_ns / 1e6
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    mean = float(ms.mean())
    return {"median_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99), "mean_ms": mean,
            "throughput": batch * 1000.0 / mean, "runs": runs, "warmup": warmup, "batch": batch,
            "threads": threads, "cpu": cpu_name(), "runtime": model.runtime,
            "input": f"{batch} x {' x '.join(map(str, shape))} float32"}


def format_latency(result: dict) -> str:
    threads = "runtime default" if result["threads"] is None else str(result["threads"])
    return (f"{result['runtime']} on {result['cpu']} (threads: {threads})\n"
            f"input {result['input']}, {result['runs']} runs after {result['warmup']} warm-up\n"
            f"median {result['median_ms']:.3f} ms  p95 {result['p95_ms']:.3f} ms  p99 {result['p99_ms']:.3f} ms  "
            f"mean {result['mean_ms']:.3f} ms\n"
            f"throughput {result['throughput']:.1f} images/s")
