"""gMLP's channel path (Liu et al. 2021, "Pay Attention to MLPs"), around its spatial gating
unit. For the (B, S, C) table n (already normalised) and hidden size h (``channel_hidden``,
the paper's d_ffn, even):

    z = GELU(n W1^T + b1)                 W1 (h, C): the channel projection C -> h
    u, v = z[..., :h/2], z[..., h/2:]     the two halves
    y = (u * gate(v)) W2^T + b2           W2 (C, h/2): the projection h/2 -> C

``gate`` is the spatial gating unit's token side, given by the ``gated`` block
(models/block.py): gate(v) = TokenMixer(LayerNorm(v)), with gMLP's ``gating`` token mixer
W_s v + b_s, W_s (S, S) ~ 0 and b_s = 1 at init, so gate(v) starts at 1 and y at
W2 u, a vanilla MLP of the u half.

MLP kinds: only ``vanilla`` (W1 and W2 independent, biases per ``model.mlp_bias``). A tied
form (write back with W1_u^T, the transpose of u's read) is not defined here: the block
refuses the symmetric and asymmetric kinds (``GatedBlock.mlp_kinds``). ``symmetry()`` measures
the u path's read / write pair, W1_u = W1[:h/2] against W2, with the measures of
models/symmetry.py (its gate is not part of the measure).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from models.symmetry import cosine_symmetry, symmetric_fraction


class GatedMlp(nn.Module):
    """y = (u * gate(v)) W2^T + b2 with (u, v) = halves of GELU(n W1^T + b1); see the module
    docstring. Mixer init: xavier-uniform W1, W2; biases ~N(0, 1e-6^2) on b1 and 0 on b2."""

    has_v: ClassVar[bool] = False
    tied: ClassVar[bool] = False

    def __init__(self, dim: int, hidden: int, bias: bool = False) -> None:
        super().__init__()
        if dim < 1 or hidden < 2 or hidden % 2:
            raise ValueError(f"gated MLP sizes: dim must be >= 1 and hidden an even number "
                             f">= 2, got dim={dim}, hidden={hidden}")
        self.w1 = nn.Parameter(torch.empty(hidden, dim))
        self.w2 = nn.Parameter(torch.empty(dim, hidden // 2))
        self.b1 = nn.Parameter(torch.zeros(hidden)) if bias else None
        self.b2 = nn.Parameter(torch.zeros(dim)) if bias else None
        self.init_weights()

    def init_weights(self) -> None:
        nn.init.xavier_uniform_(self.w1)
        nn.init.xavier_uniform_(self.w2)
        if self.b1 is not None:
            nn.init.normal_(self.b1, std=1e-6)
            nn.init.zeros_(self.b2)

    def forward(self, x: Tensor, gate: Callable[[Tensor], Tensor]) -> Tensor:
        """(B, S, C) -> (B, S, C); ``gate`` maps v (B, S, h/2) to (B, S, h/2)."""
        u, v = F.gelu(F.linear(x, self.w1, self.b1)).chunk(2, dim=-1)
        return F.linear(u * gate(v), self.w2, self.b2)

    def regularizer(self) -> Tensor:
        return self.w1.new_zeros(())

    def symmetry(self) -> dict[str, float]:
        """The u path's read W1_u (h/2, C) against its write W2 (C, h/2)."""
        w1_u = self.w1[: self.w2.shape[1]]
        return {"cos": cosine_symmetry(w1_u, self.w2),
                "symfrac": symmetric_fraction(w1_u, self.w2)}
