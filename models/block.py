"""Mixer blocks: the two wirings of token and channel mixing.

x is the (B, S, C) table of S tokens and C channels.

    serial   (vanilla Mixer):  x <- x + TokenMLP(LN1(x))      (token MLP mixes along S)
                               x <- x + ChannelMLP(LN2(x))    (channel MLP mixes along C)
    parallel (ParaMixer):      n = LN(x);  x <- x + TokenMLP(n) + ChannelMLP(n)

The parallel wiring is the update rule of the three-layer hierarchical Hopfield network: both
MLPs read the same normalised state, as two hidden layers read the same visible layer.
LN is over the whole S x C table by default (``norm="table"``, the "symmetric layer norm" of
the derivation, LayerNorm((S, C))) or per token (``norm="token"``, LayerNorm(C)).

Each block runs ``n_iter`` times with shared weights: the discrete-time Hopfield dynamics.
``energy_descent`` says whether a wiring's update descends one Hopfield energy (parallel: both
MLPs read the same state; serial: the channel MLP reads the token MLP's output, so no single
energy); ``energy_mlps`` hands the energy its two MLPs and refuses the other wirings.
"""

from __future__ import annotations

from typing import ClassVar

import torch.nn as nn
from torch import Tensor

from models.drop_path import DropPath
from models.mlp import build_mlp

NORMS = ("table", "token")


def build_norm(norm: str, seq_len: int, dim: int) -> nn.LayerNorm:
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; valid: {list(NORMS)}")
    shape = (seq_len, dim) if norm == "table" else (dim,)
    return nn.LayerNorm(shape, eps=1e-6)


class _MixingBlock(nn.Module):
    """The parts both wirings share: a token MLP, a channel MLP, drop path and n_iter."""

    energy_descent: ClassVar[bool] = False

    def __init__(
        self,
        *,
        dim: int,
        seq_len: int,
        token_hidden: int,
        channel_hidden: int,
        mlp: str = "vanilla",
        mlp_bias: bool = False,
        norm: str = "table",
        drop_path: float = 0.0,
        n_iter: int = 1,
    ) -> None:
        super().__init__()
        if n_iter < 1:
            raise ValueError(f"n_iter must be an integer >= 1, got {n_iter}")
        self.n_iter = n_iter
        self.token_mlp = build_mlp(mlp, seq_len, token_hidden, mix_dim=-2, bias=mlp_bias)
        self.channel_mlp = build_mlp(mlp, dim, channel_hidden, mix_dim=-1, bias=mlp_bias)
        self.drop_path = DropPath(drop_path)

    def init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.LayerNorm):
                m.reset_parameters()
        self.token_mlp.init_weights()
        self.channel_mlp.init_weights()

    def forward(self, x: Tensor) -> Tensor:
        for _ in range(self.n_iter):
            x = self.step(x)
        return x

    def step(self, x: Tensor) -> Tensor:  # pragma: no cover - defined by each wiring
        raise NotImplementedError

    def energy_mlps(self) -> tuple[nn.Module, nn.Module]:
        """(token MLP, channel MLP) of a wiring whose update descends a Hopfield energy."""
        if not self.energy_descent:
            valid = [name for name, cls in BLOCKS.items() if cls.energy_descent]
            raise ValueError(
                f"the energy is defined for parallel blocks only, got {type(self).__name__} "
                f"(its MLPs read different states, so its update descends no single energy); "
                f"valid block wirings: {valid}")
        return self.token_mlp, self.channel_mlp


class SerialBlock(_MixingBlock):
    """Vanilla Mixer wiring: token mixing, then channel mixing, each with its own LN."""

    def __init__(self, *, dim: int, seq_len: int, norm: str = "table", **kw) -> None:
        super().__init__(dim=dim, seq_len=seq_len, norm=norm, **kw)
        self.norm1 = build_norm(norm, seq_len, dim)
        self.norm2 = build_norm(norm, seq_len, dim)

    def step(self, x: Tensor) -> Tensor:  # x: (B, S, C)
        x = x + self.drop_path(self.token_mlp(self.norm1(x)))
        return x + self.drop_path(self.channel_mlp(self.norm2(x)))


class ParallelBlock(_MixingBlock):
    """Parallelized wiring: one LN, both MLPs read it, both write to the residual."""

    energy_descent: ClassVar[bool] = True

    def __init__(self, *, dim: int, seq_len: int, norm: str = "table", **kw) -> None:
        super().__init__(dim=dim, seq_len=seq_len, norm=norm, **kw)
        self.norm = build_norm(norm, seq_len, dim)

    def step(self, x: Tensor) -> Tensor:  # x: (B, S, C)
        n = self.norm(x)
        return x + self.drop_path(self.token_mlp(n)) + self.drop_path(self.channel_mlp(n))


BLOCKS: dict[str, type[_MixingBlock]] = {"serial": SerialBlock, "parallel": ParallelBlock}
