"""U-DSA: the U-shaped stack of adapters on the fused embedding (MMDA, paper B).

    down:  v_i = Adapt_i(v_{i−1}),                   i = 1 … D   (v_0: the fused embedding)
    up:    v′_D = v_D,   v′_i = v_i + Remap_i(v′_{i+1}),  i = D−1 … 1

which is the paper's v′_i = Adapt_i(v_{i−1}) + Remap_i(v′_{i+1}) with the deepest layer without Remap.
RS2 is applied at every depth, so the module returns [v′_1, …, v′_D]; v′_1 (the U's exit) is the embedding
the classifier and the cache read. Depth 0 is the identity ([v_0]).

Decisions where the paper is silent: Adapt and Remap are two-layer MLPs (Linear → GELU → Linear, hidden
width = the embedding width). ``skip=True`` (the default; the paper reports skip connections help) makes
every Adapt residual, Adapt_i(x) = x + MLP(x), and zero-initialises the last layer of every MLP, so at
the start every v′_i equals v_0 (a pre-trained CLIP's embedding is not disturbed). ``skip=False`` uses
plain MLPs with PyTorch's default initialisation.
"""

from __future__ import annotations

import torch
from torch import nn


def _mlp(width: int, hidden: int, zero_last: bool) -> nn.Sequential:
    mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))
    if zero_last:
        nn.init.zeros_(mlp[2].weight)
        nn.init.zeros_(mlp[2].bias)
    return mlp


class UDSA(nn.Module):
    """``forward(v0 (N, E)) -> [v′_1, …, v′_D]`` (each (N, E)); ``[v0]`` at depth 0."""

    def __init__(self, width: int, depth: int = 7, hidden: int | None = None, skip: bool = True) -> None:
        super().__init__()
        if depth < 0:
            raise ValueError(f"U-DSA depth must be >= 0, got {depth}")
        hidden = hidden or width
        self.skip = skip
        self.adapt = nn.ModuleList(_mlp(width, hidden, skip) for _ in range(depth))
        # Remap_1 … Remap_{D−1}: the deepest layer has none.
        self.remap = nn.ModuleList(_mlp(width, hidden, skip) for _ in range(max(depth - 1, 0)))

    @property
    def depth(self) -> int:
        return len(self.adapt)

    def forward(self, v0: torch.Tensor) -> list[torch.Tensor]:
        if not self.depth:
            return [v0]
        down, v = [], v0
        for adapt in self.adapt:
            v = v + adapt(v) if self.skip else adapt(v)
            down.append(v)
        up = [down[-1]]
        for v_i, remap in zip(reversed(down[:-1]), reversed(self.remap)):
            up.append(v_i + remap(up[-1]))
        return up[::-1]
