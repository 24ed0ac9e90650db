"""LayerScale (Touvron et al., "Going deeper with image transformers", 2021; used by ResMLP):
a learnt per-channel scale on each residual branch, x <- x + gamma * branch(x), gamma (C,)
initialised to a small constant ``init`` so that every block starts close to the identity.
ResMLP's choice: init 0.1 for depth <= 18, 1e-5 for depth 24, 1e-6 deeper.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor


class LayerScale(nn.Module):
    """y = gamma * x along the last axis (C); gamma = ``init`` at initialisation."""

    def __init__(self, dim: int, init: float) -> None:
        super().__init__()
        self.init = float(init)
        self.gamma = nn.Parameter(torch.full((dim,), self.init))

    def reset_parameters(self) -> None:
        nn.init.constant_(self.gamma, self.init)

    def forward(self, x: Tensor) -> Tensor:  # (..., C) -> (..., C)
        return x * self.gamma

    def extra_repr(self) -> str:
        return f"init={self.init}"


def build_layer_scale(dim: int, init: float) -> nn.Module:
    """LayerScale(dim, init), or the identity (no parameters) when ``init`` is 0: off."""
    return LayerScale(dim, init) if init else nn.Identity()
