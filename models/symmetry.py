"""Measures of how symmetric an MLP's read/write weight pair is.

An MLP reads with W1 (h, d) and writes back with W2 (d, h). The Hopfield derivation needs
W2 = W1^T; both measures compare W2 with W1^T.

cosine symmetry      s = <W2, W1^T>_F / (||W2||_F ||W1||_F)            in [-1, 1]
    1 for W2 = c W1^T (c > 0), -1 for c < 0, about 0 for independent random matrices
    (for d x h Gaussian entries the standard deviation is 1 / sqrt(d h)).

symmetric fraction   f = ||S||_F^2 / (||S||_F^2 + ||A||_F^2)             in [0, 1]
    with S = (W2 + W1^T) / 2 and A = (W2 - W1^T) / 2 the symmetric and antisymmetric parts of
    the pair; equivalently f = 1/2 + <W2, W1^T>_F / (||W1||_F^2 + ||W2||_F^2).
    Exactly 1 for W2 = W1^T, exactly 0 for W2 = -W1^T, about 1/2 for independent matrices.
    Unlike s it also drops when the two norms differ (W2 = 2 W1^T gives 0.9).
"""

from __future__ import annotations

import torch
from torch import Tensor


def cosine_symmetry(w1: Tensor, w2: Tensor) -> float:
    """s = <W2, W1^T>_F / (||W2||_F ||W1||_F) for W1 (h, d), W2 (d, h)."""
    w1, w2 = w1.detach().double(), w2.detach().double()
    if w2.shape != w1.t().shape:
        raise ValueError(f"W2 must have the shape of W1^T {tuple(w1.t().shape)}, "
                         f"got {tuple(w2.shape)}")
    denom = (w1.norm() * w2.norm()).clamp_min(1e-300)
    return float(torch.sum(w2 * w1.t()) / denom)


def symmetric_fraction(w1: Tensor, w2: Tensor) -> float:
    """f = ||(W2 + W1^T)/2||^2 / (||(W2 + W1^T)/2||^2 + ||(W2 - W1^T)/2||^2)."""
    w1, w2 = w1.detach().double(), w2.detach().double()
    if w2.shape != w1.t().shape:
        raise ValueError(f"W2 must have the shape of W1^T {tuple(w1.t().shape)}, "
                         f"got {tuple(w2.shape)}")
    sym = (w2 + w1.t()).pow(2).sum()
    anti = (w2 - w1.t()).pow(2).sum()
    return float(sym / (sym + anti).clamp_min(1e-300))
