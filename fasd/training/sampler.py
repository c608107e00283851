"""Domain-balanced sampling: every source domain is drawn equally often, whatever its size; and the order
of the draws for targets streamed chunk by chunk."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler, WeightedRandomSampler

from fasd.errors import FasdError


def domain_balanced_sampler(domains: np.ndarray, max_draws: int,
                            generator: torch.Generator | None = None) -> WeightedRandomSampler:
    """Weight 1/|D_d| per frame of domain d, with replacement, min(len(domains), max_draws) draws.

    ``domains`` holds one integer domain index per training frame.
    """
    if max_draws < 1:
        raise FasdError(f"--max-draws must be >= 1, got {max_draws}")
    domains = np.asarray(domains)
    if domains.size == 0:
        raise FasdError("no training frames to sample from; check the protocol's source datasets")
    _, inverse, counts = np.unique(domains, return_inverse=True, return_counts=True)
    weights = torch.from_numpy(1.0 / counts[inverse.reshape(-1)])
    return WeightedRandomSampler(weights, num_samples=min(domains.size, max_draws),
                                 replacement=True, generator=generator)


def block_window_order(draws: np.ndarray, block_of: np.ndarray, domain_of: np.ndarray, window: int,
                       rng: np.random.Generator) -> np.ndarray:
    """Reorder ``draws`` (item indices) so that consecutive draws touch at most ``window`` store blocks.

    The blocks that hold drawn items are cut into windows of ``window`` blocks and the draws inside a window
    are shuffled. Each domain's blocks are placed in random order at evenly spaced positions of the epoch,
    so every window mixes the domains in the proportions of the whole epoch. The draws themselves (which
    items, how often) are unchanged: only their order is.
    """
    blocks, which = np.unique(block_of[draws], return_inverse=True)
    block_domain = np.empty(len(blocks), dtype=np.int64)
    block_domain[which] = domain_of[draws]
    position = np.empty(len(blocks))
    for domain in np.unique(block_domain):
        members = np.flatnonzero(block_domain == domain)
        position[members] = (rng.permutation(len(members)) + rng.random(len(members))) / len(members)
    window_of_block = np.empty(len(blocks), dtype=np.int64)
    window_of_block[np.argsort(position, kind="stable")] = np.arange(len(blocks)) // window
    return draws[np.lexsort((rng.random(len(draws)), window_of_block[which]))]


class BlockWindowSampler(Sampler[int]):
    """A sampler's draws, reordered by block_window_order for targets streamed chunk by chunk."""

    def __init__(self, base: Sampler[int], block_of: np.ndarray, domain_of: np.ndarray, window: int,
                 generator: torch.Generator | None = None):
        self.base, self.block_of, self.domain_of, self.window = base, block_of, domain_of, window
        self.generator = generator

    def __len__(self) -> int:
        return len(self.base)

    def __iter__(self):
        draws = np.fromiter(iter(self.base), dtype=np.int64)
        seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
        order = block_window_order(draws, self.block_of, self.domain_of, self.window, np.random.default_rng(seed))
        return iter(order.tolist())


class RepeatedDraws(Sampler[int]):
    """Repeated augmentation over any sampler's draws (DeiT's RASampler / timm's RepeatAugSampler, which shard
    a plain dataset across processes): each of the first ceil(n / repeats) draws is taken ``repeats`` times in
    a row, n draws in all, so a batch holds ``repeats`` differently augmented copies of a frame while the
    domain-balanced draws and the epoch length stay those of the base sampler."""

    def __init__(self, base: Sampler[int], repeats: int):
        self.base, self.repeats = base, repeats

    def __len__(self) -> int:
        return len(self.base)

    def __iter__(self) -> Iterator[int]:
        total = len(self.base)
        distinct = -(-total // self.repeats)
        draws = [index for _, index in zip(range(distinct), self.base)]
        return iter([index for index in draws for _ in range(self.repeats)][:total])
