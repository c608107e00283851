"""MD2A: modality-and-domain differential attention (MMDA, paper B Alg. 1, eq. 2).

Each sample i is paired with a partner j of the same domain and attends over both samples' tokens:

    X[i] ← [X[i]; X[j]]
    (Q, Q′) = split(X·W_q),  (K, K′) = split(X·W_k),  V = X·W_v,  s = 1/√n_d
    X_denoise = [softmax(Q·Kᵀ·s) − λ·softmax(Q′·K′ᵀ·s)]·V

Decisions where the paper is silent:

* Partner rule (``partner_index``): the first *other* sample of the batch with the same domain; a sample
  is its own partner only when it is the only one of its domain in the batch. Taking the literal first
  match would pair the first sample of every domain with itself and give it no cross-sample evidence.
  Without domains (inference) every sample is its own partner, which is exactly plain differential
  attention over the sample's own tokens (duplicated keys and values leave both softmax averages unchanged).
* Only sample i's tokens are queries (the partner's rows of the output are discarded, so computing them
  would change nothing); the output is sample i's fused tokens.
* Multi-head, like the ViT it follows: ``heads`` heads of n_d = width / heads; Q, Q′, K, K′ and V each
  ``width`` wide.
* λ is one learnable scalar initialised by Differential Transformer's schedule
  λ_init = 0.8 − 0.6·exp(−0.3·(l − 1)) with l the layer index (``lambda_layer``; MMDATeacher passes the
  number of ViT blocks + 1, since MD2A follows the last block). Differential Transformer's
  re-parameterisation of λ and its per-head GroupNorm are not used.
* Residual and output projection: tokens + W_o·X_denoise, with W_o zero-initialised so a pre-trained CLIP's
  tokens pass through unchanged at the start of fine-tuning.
* Tokens whose key mask is False (the tokens of a missing modality) are excluded from both softmaxes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def partner_index(domains: torch.Tensor) -> torch.Tensor:
    """(B,) domain ids -> (B,) index of each sample's partner: the first other sample of the same domain,
    else the sample itself."""
    domains = domains.view(-1)
    same = domains.view(-1, 1) == domains.view(1, -1)
    index = torch.arange(len(domains), device=domains.device)
    others = same & (index.view(-1, 1) != index.view(1, -1))
    # argmax returns the first True; rows without another match fall back to themselves.
    first_other = others.int().argmax(dim=1)
    return torch.where(others.any(dim=1), first_other, index)


def lambda_init(layer: int) -> float:
    """Differential Transformer's initial λ for layer ``layer`` (1-based)."""
    return 0.8 - 0.6 * math.exp(-0.3 * (layer - 1))


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, T, W) -> (B, heads, T, W / heads)."""
    batch, tokens, width = x.shape
    return x.view(batch, tokens, heads, width // heads).transpose(1, 2)


class MD2A(nn.Module):
    """``forward(tokens (B, T, W), partner (B,), key_mask (B, T) bool | None) -> fused tokens (B, T, W)``."""

    def __init__(self, width: int, heads: int = 1, lambda_layer: int = 1) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"MD2A width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.q = nn.Linear(width, 2 * width, bias=False)
        self.k = nn.Linear(width, 2 * width, bias=False)
        self.v = nn.Linear(width, width, bias=False)
        self.out = nn.Linear(width, width)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.lam = nn.Parameter(torch.tensor(lambda_init(lambda_layer)))

    def forward(self, tokens: torch.Tensor, partner: torch.Tensor,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        pair = torch.cat([tokens, tokens[partner]], dim=1)  # X[i] ← [X[i]; X[j]]
        q, q2 = self.q(tokens).chunk(2, dim=-1)
        k, k2 = self.k(pair).chunk(2, dim=-1)
        v = _heads(self.v(pair), self.heads)
        bias = None
        if key_mask is not None:
            keep = torch.cat([key_mask, key_mask[partner]], dim=1)
            bias = torch.zeros(keep.shape, dtype=tokens.dtype, device=tokens.device)
            bias = bias.masked_fill(~keep, float("-inf"))[:, None, None, :]
        scale = 1.0 / math.sqrt(tokens.shape[-1] // self.heads)
        attention = (self._softmax(q, k, scale, bias) - self.lam * self._softmax(q2, k2, scale, bias))
        denoised = (attention @ v).transpose(1, 2).reshape(tokens.shape)
        return tokens + self.out(denoised)

    def _softmax(self, q: torch.Tensor, k: torch.Tensor, scale: float, bias: torch.Tensor | None) -> torch.Tensor:
        scores = _heads(q, self.heads) @ _heads(k, self.heads).transpose(-2, -1) * scale
        return F.softmax(scores if bias is None else scores + bias, dim=-1)


class SelfAttention(nn.Module):
    """The ablation baseline (``md2a=False``, the paper's "MHSA"): plain multi-head self-attention over the
    sample's own tokens, same residual and zero-initialised output projection; the partner is ignored."""

    def __init__(self, width: int, heads: int = 1, lambda_layer: int = 1) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True)
        nn.init.zeros_(self.attention.out_proj.weight)
        nn.init.zeros_(self.attention.out_proj.bias)

    def forward(self, tokens: torch.Tensor, partner: torch.Tensor,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        padding = None if key_mask is None else ~key_mask
        fused, _ = self.attention(tokens, tokens, tokens, key_padding_mask=padding, need_weights=False)
        return tokens + fused


FUSIONS: dict[bool, type[nn.Module]] = {True: MD2A, False: SelfAttention}  # by the ``md2a`` switch
