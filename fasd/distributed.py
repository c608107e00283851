"""Several processes, one command: torchrun's ranks joined in a torch.distributed process group.

Under ``torchrun --nproc-per-node G -m fasd ...`` every process runs the same command; this module only
decides who does what (rank 0 creates store layouts, logs and writes checkpoints) with torch.distributed's
own collectives. Outside torchrun (WORLD_SIZE unset or 1) every helper is a no-op, so the single-process
code path is the same code.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist

from fasd.errors import FasdError

T = TypeVar("T")

# A rank waits this long at a collective for the others (e.g. for rank 0's layout, or the slowest shard).
TIMEOUT = timedelta(minutes=30)


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def current() -> Ranks:
    """This process's place in the initialised process group (rank 0 of 1 without one)."""
    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size(), _local_rank())
    return Ranks()


def _backend() -> str:
    """gloo for CPU tensors and Python objects; NCCL for CUDA tensors (DDP gradients) when GPUs are present."""
    if not torch.cuda.is_available():
        return "gloo"
    local_rank, gpus = _local_rank(), torch.cuda.device_count()
    if local_rank >= gpus:
        raise FasdError(f"torchrun started local rank {local_rank} but only {gpus} GPU(s) are visible: use "
                        f"--nproc-per-node {gpus} or fewer (or CUDA_VISIBLE_DEVICES= to run every rank on the CPU)")
    # Each rank owns one GPU: --device auto/cuda then means this rank's GPU.
    torch.cuda.set_device(local_rank)
    return "cpu:gloo,cuda:nccl"


@contextmanager
def process_group() -> Iterator[Ranks]:
    """Join torchrun's process group for the duration of a command; a no-op for a single process.

    torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; the group is initialised
    from them (``env://``) and destroyed on the way out. RANK/WORLD_SIZE without MASTER_ADDR (set by hand
    or by a job array) mean independent processes: no group.
    """
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1 and "MASTER_ADDR" in os.environ
    if not launched or not dist.is_available() or dist.is_initialized():
        yield current()
        return
    dist.init_process_group(_backend(), timeout=TIMEOUT)
    try:
        yield current()
    finally:
        dist.destroy_process_group()


def barrier() -> None:
    if current().world_size > 1:
        dist.barrier()


def broadcast(value: T) -> T:
    """Rank 0's ``value`` on every rank."""
    if current().world_size == 1:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def all_gather(value: T) -> list[T]:
    """Every rank's ``value``, in rank order, on every rank."""
    world = current().world_size
    if world == 1:
        return [value]
    gathered: list = [None] * world
    dist.all_gather_object(gathered, value)
    return gathered


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """The mean of each value over ranks (every rank passes the same keys)."""
    world = current().world_size
    if world == 1 or not values:
        return values
    keys = sorted(values)
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    dist.all_reduce(tensor)
    return {k: v / world for k, v in zip(keys, tensor.tolist())}


def main_first(step: Callable[[], T]) -> T:
    """Run ``step`` on rank 0, then on the other ranks once it has succeeded (e.g. rank 0 creates a layout,
    the others then find and verify it). A failure on rank 0 is raised on every rank instead of leaving the
    others waiting at a collective."""
    ranks = current()
    if ranks.world_size == 1:
        return step()
    result, error = None, None
    if ranks.is_main:
        try:
            result = step()
        except Exception as exc:  # noqa: BLE001 - re-raised below, after telling the other ranks
            error = exc
    failure = broadcast(None if error is None else str(error))
    if error is not None:
        raise error
    if failure is not None:
        raise FasdError(f"rank 0 failed: {failure}")
    return result if ranks.is_main else step()
