"""Holding a class-stratified validation split out of the training split."""

from __future__ import annotations

import torch
from torch import Tensor


def check_fraction(val_fraction: float) -> None:
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")


def check_val_seed(val_seed: int | None) -> None:
    if val_seed is not None and (isinstance(val_seed, bool) or not isinstance(val_seed, int)):
        raise ValueError(f"val_seed must be an integer, or null for the run's seed, got "
                         f"{val_seed!r}")


def class_quotas(counts: Tensor, n_val: int) -> Tensor:
    """(K,) samples per class -> (K,) validation samples per class, summing to ``n_val``.

    Largest remainder: class k first gets floor(n_k * f) with f = n_val / N, then the classes
    with the largest remainders n_k * f - floor(n_k * f) get one more each (ties: the lower
    class index) until n_val is reached. So every class holds out floor or ceil of its exact
    share and keeps its proportion to within one sample.
    """
    exact = counts.double() * (n_val / counts.sum().item())
    base = exact.floor().long()
    short = n_val - int(base.sum())
    # stable sort of -remainder: equal remainders keep class order
    order = torch.sort(-(exact - base), stable=True).indices
    base[order[:short]] += 1
    return base


def holdout(x: Tensor, y: Tensor, val_fraction: float, seed: int
            ) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """(train_x, train_y, val_x, val_y) from x (N, ...) and y (N,) int64 labels.

    n_val = round(N * val_fraction) samples (at least 1 when val_fraction > 0, at most N - 1),
    stratified by class: each class gives floor or ceil of its share n_k * n_val / N
    (``class_quotas``), so the validation split has the training split's class proportions.
    Which samples of a class are held out follows a permutation drawn from ``seed`` alone:
    the same seed holds out the same samples whatever else differs. Both parts keep the
    original order. val_x/val_y are None when val_fraction is 0.
    """
    check_fraction(val_fraction)
    if val_fraction == 0.0:
        return x, y, None, None
    n = len(y)
    if n < 2:
        raise ValueError(f"cannot hold out a validation split from {n} training sample(s)")
    n_val = min(max(1, round(n * val_fraction)), n - 1)
    labels = y.cpu()
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    # samples grouped by class, in random order within each class
    grouped = perm[torch.sort(labels[perm], stable=True).indices]
    counts = torch.bincount(labels)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(n) - starts[labels[grouped]]  # position within its class
    is_val = torch.zeros(n, dtype=torch.bool)
    is_val[grouped] = rank < class_quotas(counts, n_val)[labels[grouped]]
    val, train = is_val.nonzero().squeeze(1), (~is_val).nonzero().squeeze(1)
    return x[train.to(x.device)], y[train.to(y.device)], x[val.to(x.device)], y[val.to(y.device)]
