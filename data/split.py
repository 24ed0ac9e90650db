"""Holding a validation split out of the training split."""

from __future__ import annotations

import torch
from torch import Tensor


def check_fraction(val_fraction: float) -> None:
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")


def holdout(x: Tensor, y: Tensor, val_fraction: float, seed: int
            ) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """(train_x, train_y, val_x, val_y) from x (N, ...) and y (N,).

    round(N * val_fraction) samples (at least 1 when val_fraction > 0, at most N - 1) chosen by
    a permutation drawn from ``seed`` alone, so the same seed always holds out the same
    samples. Both parts keep the original order. val_x/val_y are None when val_fraction is 0.
    """
    check_fraction(val_fraction)
    if val_fraction == 0.0:
        return x, y, None, None
    n = len(y)
    if n < 2:
        raise ValueError(f"cannot hold out a validation split from {n} training sample(s)")
    n_val = min(max(1, round(n * val_fraction)), n - 1)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val, train = perm[:n_val].sort().values, perm[n_val:].sort().values
    return x[train], y[train], x[val], y[val]
