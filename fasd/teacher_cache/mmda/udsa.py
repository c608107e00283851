"""U-DSA: the U-shaped stack of adapters on the fused embedding (MMDA, paper B).

    down:  v_i = Adapt_i(v_{i−1}),                   i = 1 … D   (v_0: the fused embedding)
    up:    v′_D = v_D,   v′_i = v_i + Remap_i(v′_{i+1}),  i = D−1 … 1
    exit:  v′_0 = v_0 + Remap_0(v′_1)                 (``exit="v0"``, the default)

which is the paper's v′_i = Adapt_i(v_{i−1}) + Remap_i(v′_{i+1}) with the deepest layer without Remap.
Fig. 6 of paper B draws the U's exit at v′_0 = v_0 + Remap(v′_1) (``--udsa-exit v0``: D Remaps, one per
layer, the reading of Table 9's per-layer parameter count); fasd 0.2 exited at v′_1 (``--udsa-exit v1``: D − 1
Remaps). RS2 is applied at every depth, so the module returns [exit, …, v′_D] ([v′_0, v′_1, …] or
[v′_1, …]); the first is the embedding the classifier and the cache read. Depth 0 is the identity ([v_0]).

Decisions where the paper is silent: Adapt and Remap are two-layer MLPs (Linear → GELU → Linear, hidden
width = the embedding width). ``skip=True`` (the default; the paper reports skip connections help) makes
every Adapt residual, Adapt_i(x) = x + MLP(x), and zero-initialises the last layer of every MLP, so at
the start every v′_i equals v_0 (a pre-trained CLIP's embedding is not disturbed). ``skip=False`` uses
plain MLPs with PyTorch's default initialisation.
"""

from __future__ import annotations

import torch
from torch import nn

UDSA_EXITS = ("v0", "v1")  # --udsa-exit: v′_0 = v_0 + Remap_0(v′_1) (paper B Fig. 6) or v′_1 (fasd 0.2)
# Paper B Table 9: the whole model's parameters at U-DSA depth 0 and 7, in millions.
TABLE9_PARAMETERS = {0: 169.95, 7: 302.46}


def _mlp(width: int, hidden: int, zero_last: bool) -> nn.Sequential:
    mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))
    if zero_last:
        nn.init.zeros_(mlp[2].weight)
        nn.init.zeros_(mlp[2].bias)
    return mlp


class UDSA(nn.Module):
    """``forward(v0 (N, E)) -> [v′_1, …, v′_D]`` (each (N, E)); ``[v0]`` at depth 0."""

    def __init__(self, width: int, depth: int = 7, hidden: int | None = None, skip: bool = True,
                 exit: str = "v0") -> None:
        super().__init__()
        if depth < 0:
            raise ValueError(f"U-DSA depth must be >= 0, got {depth}")
        if exit not in UDSA_EXITS:
            raise ValueError(f"U-DSA exit must be one of {', '.join(UDSA_EXITS)}, got {exit}")
        hidden = hidden or width
        self.skip, self.exit = skip, exit
        self.adapt = nn.ModuleList(_mlp(width, hidden, skip) for _ in range(depth))
        # Remap_1 … Remap_{D−1} (the deepest layer has none), led by Remap_0 when the exit is v′_0.
        remaps = depth if exit == "v0" else depth - 1
        self.remap = nn.ModuleList(_mlp(width, hidden, skip) for _ in range(max(remaps, 0)))

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
        lower = [v0, *down[:-1]] if self.exit == "v0" else down[:-1]  # v_0 … v_{D−1} or v_1 … v_{D−1}
        up = [down[-1]]
        for v_i, remap in zip(reversed(lower), reversed(self.remap)):
            up.append(v_i + remap(up[-1]))
        return up[::-1]


def per_layer_parameters(module: UDSA) -> float:
    """Parameters per U-DSA layer (one Adapt and one Remap), in millions (paper B Table 9: 18.93 M)."""
    return sum(p.numel() for p in module.parameters()) / max(module.depth, 1) / 1e6
