"""Teacher-target lookup in memory vs streamed chunk by chunk, on a store of >= 1 M synthetic rows.

Goal (issue 8): target lookup is never the training bottleneck, i.e. >= 10 x the student's training
frames/s on this CPU, in both modes.

The store holds ROWS frames of 512-d fp16 unit features + logits, written directly through the store
writer (no teacher), in two datasets of 3:1 size so sampling is domain-balanced across unequal domains.
Each mode is measured in a fresh subprocess through the trainer's own code (attach_targets, the
domain-balanced sampler, BlockWindowSampler's order when streaming):
  load      seconds to check the store and build the lookups (frame-ID index, logits, features if in memory)
  lookup    frames/s of fetching (features, logits) for one epoch of draws, in batches of 64
  memory    peak resident set size of the process, and its size before loading
The student's training frames/s is the real model + loss + AdamW step on random batches (no data loading),
an upper bound on training speed, so the ratio printed is conservative.

    python bench/store_io.py [--rows 1048576] [--draws 60000] [--store DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fasd.data.source import FrameSource, FrameTable
from fasd.store_schema.store import open_store
from fasd.student_train.data import DomainRows, StudentFrames
from fasd.student_train.losses import DistillationLoss
from fasd.student_train.model import build_student
from fasd.training.sampler import BlockWindowSampler, domain_balanced_sampler
from fasd.student_train.targets import STREAM_WINDOW, attach_targets
from synthetic_targets import DIM, write_random_targets

CHUNK_ROWS, BATCH = 4096, 64
SHARES = {"big": 3, "small": 1}


class IdsOnly(FrameSource):
    """A frame source with frame IDs and labels but no images: all target lookup needs."""

    def __init__(self, name: str, rows: int):
        self.name, self.format, self.path = name, "synthetic", f"bench:{name}"
        ids = np.char.add(f"{name}-", np.char.zfill(np.arange(rows).astype(str), 7))
        self.table = FrameTable(ids, (np.arange(rows) % 3 == 0).astype(np.int8), np.full(rows, "train"),
                                np.full(rows, ""), np.full(rows, ""))

    def read_image(self, row: int) -> np.ndarray:
        raise NotImplementedError("the store bench reads targets only")


def sources(rows: int) -> list[IdsOnly]:
    chunks = rows // CHUNK_ROWS
    big = chunks * SHARES["big"] // sum(SHARES.values()) * CHUNK_ROWS
    return [IdsOnly("big", big), IdsOnly("small", rows - big)]


def write_store(path: str, rows: int) -> float:
    """Write every dataset chunk by chunk with random unit features; returns seconds."""
    began = time.perf_counter()
    write_random_targets(path, sources(rows), CHUNK_ROWS)
    return time.perf_counter() - began


def rss_mb() -> float:
    """Current resident set size (Linux /proc), else the peak."""
    status = Path("/proc/self/status")
    if status.exists():
        line = next(row for row in status.read_text().splitlines() if row.startswith("VmRSS:"))
        return int(line.split()[1]) / 1024
    return peak_rss_mb()


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def measure(store: str, rows: int, mode: str, draws: int) -> dict:
    """One mode, in this (fresh) process: load, then look up one epoch of draws in training order."""
    before = rss_mb()
    began = time.perf_counter()
    frames = StudentFrames([DomainRows(s, np.arange(len(s))) for s in sources(rows)], transform=None)
    _, (lookup,) = attach_targets(store, [frames], stream=mode != "memory")
    load_s = time.perf_counter() - began
    loaded = rss_mb()
    generator = torch.Generator().manual_seed(0)
    sampler = domain_balanced_sampler(frames.domain_of, draws, generator)
    if mode == "stream":
        sampler = BlockWindowSampler(sampler, lookup.block_of, frames.domain_of, STREAM_WINDOW, generator)
    began = time.perf_counter()
    order = np.fromiter(sampler, dtype=np.int64)
    for start in range(0, len(order), BATCH):
        lookup(order[start:start + BATCH])
    lookup_s = time.perf_counter() - began
    reads = lookup.domains[0].chunked["feature"].cache.reads if mode != "memory" else 0
    return {"mode": mode, "draws": len(order), "load_s": load_s, "frames_per_s": len(order) / lookup_s,
            "rss_before_mb": before, "rss_loaded_mb": loaded, "peak_rss_mb": peak_rss_mb(), "chunks_read": reads}


def training_frames_per_s(steps: int = 8, warmup: int = 2) -> float:
    """The student's training step (forward, distillation loss, backward, AdamW) on random batches."""
    torch.manual_seed(0)
    student, _ = build_student(None, DIM)
    student.train()
    criterion = DistillationLoss()
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-3)
    images = torch.randn(BATCH, 3, 112, 112)
    labels, domains = torch.randint(0, 2, (BATCH,)), torch.randint(0, 2, (BATCH,))
    teacher_feature = torch.nn.functional.normalize(torch.randn(BATCH, DIM), dim=1)
    teacher_logits = torch.randn(BATCH, 2)
    for step in range(warmup + steps):
        if step == warmup:  # the first steps are slower (allocator, kernel selection)
            began = time.perf_counter()
        logits, features = student(images)
        loss, _ = criterion(logits, student.project(features), labels, domains, teacher_logits, teacher_feature)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return steps * BATCH / (time.perf_counter() - began)


def run_mode(store: str, rows: int, mode: str, draws: int) -> dict:
    command = [sys.executable, __file__, "--store", store, "--rows", str(rows), "--draws", str(draws),
               "--measure", mode]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2**20)
    parser.add_argument("--draws", type=int, default=60000, help="draws per epoch (the trainer's --max-draws)")
    parser.add_argument("--random-draws", type=int, default=1000,
                        help="draws for streaming in random order (no windows), to show what windows save")
    parser.add_argument("--store", help="reuse or keep the synthetic store here (default: a temporary folder)")
    parser.add_argument("--measure", choices=("memory", "stream", "stream-random"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.store, args.rows, args.measure, args.draws)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or str(Path(tmp) / "targets.zarr")
        exists = Path(store, "zarr.json").exists()
        write_s = 0.0 if exists else write_store(store, args.rows)
        opened = open_store(store)
        on_disk = sum(int(opened.dataset(n)[a].nbytes_stored()) for n in opened.dataset_names()
                      for a in ("feature", "logits"))
        results = [run_mode(store, args.rows, "memory", args.draws), run_mode(store, args.rows, "stream", args.draws),
                   run_mode(store, args.rows, "stream-random", args.random_draws)]
    train = training_frames_per_s()
    print(f"store: {args.rows:,} rows in 2 datasets ({', '.join(f'{s.name} {len(s):,}' for s in sources(args.rows))}), "
          f"{CHUNK_ROWS}-row chunks of {DIM}-d fp16 features, {on_disk / 1e9:.2f} GB of targets on disk"
          + (f", written in {write_s:.0f} s" if write_s else " (reused)"))
    print(f"CPU, {torch.get_num_threads()} torch threads; lookups in batches of {BATCH}; "
          f"streaming window {STREAM_WINDOW} chunks (cache {2 * STREAM_WINDOW})")
    print(f"{'mode':<22}{'draws':>8}{'load s':>9}{'lookup frames/s':>17}{'chunks read':>13}"
          f"{'RSS before MB':>15}{'RSS loaded MB':>15}{'peak RSS MB':>13}")
    for r in results:
        print(f"{r['mode']:<22}{r['draws']:>8}{r['load_s']:>9.1f}{r['frames_per_s']:>17,.0f}{r['chunks_read']:>13}"
              f"{r['rss_before_mb']:>15.0f}{r['rss_loaded_mb']:>15.0f}{r['peak_rss_mb']:>13.0f}")
    print(f"student training (model + loss + AdamW, batch {BATCH}, no data loading): {train:.1f} frames/s")
    for r in results[:2]:
        print(f"lookup / training, {r['mode']:<8} {r['frames_per_s'] / train:10.0f} x   (goal >= 10)")
    print(f"lookup / training, stream in random order (no windows) {results[2]['frames_per_s'] / train:6.1f} x")


if __name__ == "__main__":
    main()
