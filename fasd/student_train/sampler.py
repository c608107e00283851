"""Domain-balanced sampling: every source domain is drawn equally often, whatever its size."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import WeightedRandomSampler

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
