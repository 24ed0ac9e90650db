"""Learning-rate schedule: linear warm-up, then cosine decay (per optimiser step)."""

from __future__ import annotations

import math


def scaled_lr(lr: float, batch_size: int, lr_batch: int = 512) -> float:
    """Linear scaling rule (as in the paper: lr is given per ``lr_batch`` images)."""
    return lr * batch_size / lr_batch


def lr_at(step: int, total_steps: int, warmup_steps: int, peak_lr: float, min_lr: float) -> float:
    """lr for optimiser step ``step`` (0-based) of ``total_steps``.

    Warm-up: peak_lr * (step + 1) / warmup_steps. Then
    min_lr + (peak_lr - min_lr) * (1 + cos(pi * t)) / 2 with t going 0 -> 1 over the rest.
    """
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    t = min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr + (peak_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))
