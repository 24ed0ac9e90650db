"""The norms a block can use, chosen by ``model.norm``, for x the (B, S, C) table:

    table   LayerNorm((S, C)): statistics over the whole table, the "symmetric layer norm" of
            the Hopfield derivation; gain and bias (S, C)
    token   LayerNorm(C): statistics per token (ViT, gMLP); gain and bias (C,)
    affine  Affine(C) (ResMLP, Touvron et al. 2021): y = alpha * x + beta per channel, no
            statistics at all; alpha (C,) = 1, beta (C,) = 0 at init, so it starts as the identity

The final norm before the head is the per-token form of the block norm (``final_norm``):
LayerNorm(C) for table and token (as the Mixer always had), Affine(C) for affine (as ResMLP).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

NORMS = ("table", "token", "affine")


class Affine(nn.Module):
    """y = alpha * x + beta along the last axis (C); alpha = 1, beta = 0 at init."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(dim))
        self.beta = nn.Parameter(torch.zeros(dim))

    def reset_parameters(self) -> None:
        nn.init.ones_(self.alpha)
        nn.init.zeros_(self.beta)

    def forward(self, x: Tensor) -> Tensor:  # (..., C) -> (..., C)
        return torch.addcmul(self.beta, self.alpha, x)


def build_norm(norm: str, seq_len: int, dim: int) -> nn.Module:
    """The block norm ``norm`` (one of NORMS) for a (B, seq_len, dim) table."""
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; valid: {list(NORMS)}")
    if norm == "affine":
        return Affine(dim)
    return nn.LayerNorm((seq_len, dim) if norm == "table" else (dim,), eps=1e-6)


def final_norm(norm: str, dim: int) -> nn.Module:
    """The norm before the head: the per-token form of the block norm ``norm``."""
    return build_norm("token" if norm == "table" else norm, 1, dim)
