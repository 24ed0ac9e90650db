"""Mini-batches sliced straight out of in-memory tensors (no DataLoader, no workers)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor


def batches(
    x: Tensor, y: Tensor, batch_size: int, shuffle: bool,
    generator: torch.Generator | None = None, drop_last: bool = False,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield (x[idx], y[idx]) batches of ``batch_size`` rows of x (N, ...) and y (N,), on their
    device.

    With shuffle, the order is a permutation drawn from ``generator`` (on any device: the
    permutation is moved to x's). Without, batches are contiguous slices (views, no copy).
    The last batch is smaller unless drop_last, which drops it.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(x)
    if len(y) != n:
        raise ValueError(f"x has {n} rows but y has {len(y)}")
    end = n - n % batch_size if drop_last else n
    if not shuffle:
        for start in range(0, end, batch_size):
            yield x[start:start + batch_size], y[start:start + batch_size]
        return
    device = generator.device if generator is not None else x.device
    perm = torch.randperm(n, generator=generator, device=device)
    perm_x, perm_y = perm.to(x.device), perm.to(y.device)  # no-ops when already there
    for start in range(0, end, batch_size):
        yield x[perm_x[start:start + batch_size]], y[perm_y[start:start + batch_size]]
