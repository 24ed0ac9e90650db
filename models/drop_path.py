"""Stochastic depth: drop a residual branch for a whole sample (Huang et al. 2016)."""

from __future__ import annotations

import torch.nn as nn
from torch import Tensor


class DropPath(nn.Module):
    """Zero the branch for a random subset of samples with probability p while training,
    rescaling the kept ones by 1 / (1 - p) so the expectation is unchanged.

    Input and output: (B, ...). Identity in eval mode or when p == 0.
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop path rate must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"
