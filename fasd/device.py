"""Device selection shared by the teacher job and the student trainer."""

from __future__ import annotations

import os

import torch

from fasd.errors import FasdError


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else the CPU; an unavailable device is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise FasdError(f"unknown --device '{name}'; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FasdError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    return device


def default_workers() -> int:
    """DataLoader workers: $FASD_WORKERS when set, else half the cores, at least one, at most eight.

    Decoding and augmenting in a worker process (one torch thread each) is far cheaper than doing it in
    the main process, whose multi-threaded ops oversubscribe the cores on tiny per-image tensors. The test suite
    sets FASD_WORKERS=0: hundreds of runs in one long-lived, many-threaded pytest process are where a forked
    worker can inherit a held lock (one hang seen in 2 suite runs); tests that pass --workers still fork.
    """
    override = os.environ.get("FASD_WORKERS", "").strip()
    if override.isdigit():
        return int(override)
    return max(1, min(8, (os.cpu_count() or 2) // 2))


def set_cpu_threads(device: torch.device, busy_workers: int) -> None:
    """Leave a core to each busy DataLoader worker when computing on the CPU.

    Measured here (2 cores, one augmenting worker): a MobileNetV3-Small training step takes 0.4 s with one
    torch thread and over 5 s with two, because OpenMP's barrier waits stall whenever a thread is descheduled.
    """
    if device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) - busy_workers))
