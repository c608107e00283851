"""Domain-balanced sampler: equal draws per domain, draw count capped."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fasd.errors import FasdError
from fasd.training.sampler import domain_balanced_sampler


def test_unbalanced_domains_are_drawn_equally_often():
    domains = np.repeat([3, 7, 9], [4000, 400, 40])  # non-contiguous domain ids
    sampler = domain_balanced_sampler(domains, max_draws=100_000,
                                      generator=torch.Generator().manual_seed(0))
    assert len(sampler) == len(domains)
    drawn = domains[np.fromiter(sampler, dtype=np.int64)]
    assert len(drawn) == len(domains)
    for domain in (3, 7, 9):
        assert np.mean(drawn == domain) == pytest.approx(1 / 3, abs=0.03)


def test_num_samples_capped_by_max_draws_and_reproducible():
    domains = np.repeat([0, 1], [500, 50])
    first = list(domain_balanced_sampler(domains, 100, torch.Generator().manual_seed(1)))
    second = list(domain_balanced_sampler(domains, 100, torch.Generator().manual_seed(1)))
    assert len(first) == 100
    assert first == second
    assert all(0 <= i < len(domains) for i in first)


@pytest.mark.parametrize("domains, max_draws", [(np.zeros(5, int), 0), (np.zeros(0, int), 10)])
def test_bad_input_is_a_user_error(domains, max_draws):
    with pytest.raises(FasdError):
        domain_balanced_sampler(domains, max_draws)
