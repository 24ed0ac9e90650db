"""Test-set evaluation: mean cross-entropy and top-1 accuracy (percent).

Data-parallel: each rank evaluates its contiguous shard and the sums are all-reduced, so
every rank gets the metrics of the whole set."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from data import normalize
from training.distributed import DistEnv


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor, mean, std, batch_size: int,
             autocast: torch.autocast, dist: DistEnv | None = None) -> tuple[float, float]:
    """x (N, C, H, W) uint8 and y (N,) on the model's device -> (loss, accuracy %)."""
    n = max(1, len(x))
    if dist is not None and dist.enabled:
        part = dist.shard(len(x))
        x, y = x[part], y[part]
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    for i in range(0, len(x), batch_size):
        xb, yb = normalize(x[i:i + batch_size], mean, std), y[i:i + batch_size]
        with autocast:
            logits = model(xb)
        loss_sum += F.cross_entropy(logits.float(), yb, reduction="sum").double()
        correct += (logits.argmax(dim=1) == yb).sum()
    model.train(was_training)
    if dist is not None and dist.enabled:
        sums = dist.all_reduce_sum(torch.stack([loss_sum, correct.double()]))
        loss_sum, correct = sums[0], sums[1]
    return float(loss_sum) / n, 100.0 * float(correct) / n
