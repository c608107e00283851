"""Learning-rate schedule: linear warm-up epochs, then cosine decay to ``floor`` x the peak (zero by default; the deit
augmentation policy's min lr 1e-5), per optimiser step."""

from __future__ import annotations

import math

import torch


def warmup_cosine(optimizer: torch.optim.Optimizer, steps_per_epoch: int, epochs: int,
                  warmup_epochs: int = 1, floor: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = max(1, warmup_epochs * steps_per_epoch) if epochs > warmup_epochs else 0
    total = max(1, epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
