"""Mixer blocks: the wirings of token and channel mixing.

x is the (B, S, C) table of S tokens and C channels; TokenMixer is the block's token mixer
(models/token_mixer.py: the token MLP of the model's MLP kind, ResMLP's linear map,
attention, ...), ChannelMLP its channel MLP (models/mlp.py), g_t, g_c optional LayerScales
(models/layer_scale.py; the identity when ``layer_scale`` = 0, the default).

    serial   (MLP-Mixer, ResMLP, ViT):  x <- x + g_t * TokenMixer(N1(x))
                                        x <- x + g_c * ChannelMLP(N2(x))
    parallel (ParaMixer):               n = N(x)
                                        x <- x + g_t * TokenMixer(n) + g_c * ChannelMLP(n)
    gated    (gMLP):                    n = N(x);  (u, v) = halves of GELU(n W1^T)     (width h)
                                        x <- x + g * (u * TokenMixer(N_v(v))) W2^T
                                        (models/gated_mlp.py; TokenMixer = ``gating``: W_s v + 1)

The parallel wiring is the update rule of the three-layer hierarchical Hopfield network: both
MLPs read the same normalised state, as two hidden layers read the same visible layer.
N is a norm of models/norm.py (``norm``): LayerNorm over the whole S x C table (``table``, the
default: the "symmetric layer norm" of the derivation), per token (``token``) or ResMLP's
``affine``. In the gated block N_v is the same kind of norm over (S, h/2).

Each block runs ``n_iter`` times with shared weights: the discrete-time Hopfield dynamics.
``energy_descent`` says whether a wiring's update descends one Hopfield energy (parallel: both
MLPs read the same state; serial: the channel MLP reads the token mixer's output, so no single
energy); ``energy_mlps`` hands the energy its two MLPs and refuses the other wirings, a token
mixer that is not an MLP and a LayerScale. ``mlp_kinds`` lists the MLP kinds a wiring can be
built with (None: all); ``arg_errors`` checks sizes before anything is built.

Attribute names are the same in every wiring: ``blk.token_mlp`` is the token mixer (for the
``mlp`` token mixer the MLP module itself, as before the slot existed), ``blk.channel_mlp`` the
channel MLP; both have ``regularizer()`` and ``symmetry()``, which Mixer reads.
"""

from __future__ import annotations

from typing import ClassVar

import torch.nn as nn
from torch import Tensor

from models.drop_path import DropPath
from models.gated_mlp import GatedMlp
from models.layer_scale import LayerScale, build_layer_scale
from models.mlp import build_mlp
from models.norm import NORMS, Affine, build_norm
from models.token_mixer import build_token_mixer

__all__ = ["BLOCKS", "NORMS", "GatedBlock", "ParallelBlock", "SerialBlock", "build_norm"]


class _MixingBlock(nn.Module):
    """The parts every wiring shares: a token mixer, a channel MLP, drop path and n_iter."""

    energy_descent: ClassVar[bool] = False
    mlp_kinds: ClassVar[tuple[str, ...] | None] = None

    def __init__(
        self,
        *,
        dim: int,
        seq_len: int,
        token_hidden: int,
        channel_hidden: int,
        mlp: str = "vanilla",
        token_mixer: str = "mlp",
        mlp_bias: bool = False,
        norm: str = "table",
        drop_path: float = 0.0,
        n_iter: int = 1,
        layer_scale: float = 0.0,
        **token_mixer_kw: object,
    ) -> None:
        super().__init__()
        if n_iter < 1:
            raise ValueError(f"n_iter must be an integer >= 1, got {n_iter}")
        errors = self.arg_errors(mlp=mlp, dim=dim, channel_hidden=channel_hidden)
        if errors:
            raise ValueError("; ".join(errors))
        self.n_iter = n_iter
        self.layer_scale = float(layer_scale)
        self.token_mlp = build_token_mixer(
            token_mixer, dim=self.token_mixer_dim(dim, channel_hidden), seq_len=seq_len,
            hidden=token_hidden, mlp=mlp, bias=mlp_bias, **token_mixer_kw)
        self.channel_mlp = self.build_channel_mlp(mlp, dim, channel_hidden, mlp_bias)
        self.drop_path = DropPath(drop_path)

    @classmethod
    def token_mixer_dim(cls, dim: int, channel_hidden: int) -> int:
        """The width C of the table the token mixer reads."""
        return dim

    @classmethod
    def arg_errors(cls, *, mlp: object, **_: object) -> list[str]:
        """Invalid combinations for this wiring, each naming the value and what is valid."""
        if cls.mlp_kinds is not None and mlp not in cls.mlp_kinds:
            name = next((k for k, v in BLOCKS.items() if v is cls), cls.__name__)
            return [f"model.mlp={mlp!r} is not defined for model.block={name!r}; valid: "
                    f"{list(cls.mlp_kinds)}"]
        return []

    def build_channel_mlp(self, mlp: str, dim: int, hidden: int, bias: bool) -> nn.Module:
        return build_mlp(mlp, dim, hidden, mix_dim=-1, bias=bias)

    def init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.LayerNorm, Affine, LayerScale)):
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
        if not hasattr(self.token_mlp, "interaction_weights"):
            raise ValueError(
                f"the energy is defined for a token MLP (token_mixer='mlp') only, got "
                f"{type(self.token_mlp).__name__}, which has no interaction weights W, V")
        if self.layer_scale:
            raise ValueError(f"the energy is defined without LayerScale, got "
                             f"layer_scale={self.layer_scale}; valid: layer_scale=0")
        return self.token_mlp, self.channel_mlp


class SerialBlock(_MixingBlock):
    """MLP-Mixer / ResMLP / ViT wiring: token mixing, then channel mixing, each with its own
    norm and (optional) LayerScale."""

    def __init__(self, *, dim: int, seq_len: int, norm: str = "table",
                 layer_scale: float = 0.0, **kw) -> None:
        super().__init__(dim=dim, seq_len=seq_len, norm=norm, layer_scale=layer_scale, **kw)
        self.norm1 = build_norm(norm, seq_len, dim)
        self.norm2 = build_norm(norm, seq_len, dim)
        self.ls_token = build_layer_scale(dim, layer_scale)
        self.ls_channel = build_layer_scale(dim, layer_scale)

    def step(self, x: Tensor) -> Tensor:  # x: (B, S, C)
        x = x + self.drop_path(self.ls_token(self.token_mlp(self.norm1(x))))
        return x + self.drop_path(self.ls_channel(self.channel_mlp(self.norm2(x))))


class ParallelBlock(_MixingBlock):
    """Parallelized wiring: one norm, both mixers read it, both write to the residual."""

    energy_descent: ClassVar[bool] = True

    def __init__(self, *, dim: int, seq_len: int, norm: str = "table",
                 layer_scale: float = 0.0, **kw) -> None:
        super().__init__(dim=dim, seq_len=seq_len, norm=norm, layer_scale=layer_scale, **kw)
        self.norm = build_norm(norm, seq_len, dim)
        self.ls_token = build_layer_scale(dim, layer_scale)
        self.ls_channel = build_layer_scale(dim, layer_scale)

    def step(self, x: Tensor) -> Tensor:  # x: (B, S, C)
        n = self.norm(x)
        return (x + self.drop_path(self.ls_token(self.token_mlp(n)))
                + self.drop_path(self.ls_channel(self.channel_mlp(n))))


class GatedBlock(_MixingBlock):
    """gMLP wiring (Liu et al. 2021): one residual branch, norm -> channel projection C -> h
    -> GELU -> spatial gating unit (u * TokenMixer(N_v(v))) -> projection h/2 -> C.

    The token mixer reads the half v, a (B, S, h/2) table. Only the vanilla MLP kind is
    defined (models/gated_mlp.py)."""

    mlp_kinds: ClassVar[tuple[str, ...] | None] = ("vanilla",)

    def __init__(self, *, dim: int, seq_len: int, channel_hidden: int, norm: str = "table",
                 layer_scale: float = 0.0, **kw) -> None:
        super().__init__(dim=dim, seq_len=seq_len, channel_hidden=channel_hidden, norm=norm,
                         layer_scale=layer_scale, **kw)
        self.norm = build_norm(norm, seq_len, dim)
        self.norm_v = build_norm(norm, seq_len, channel_hidden // 2)
        self.ls = build_layer_scale(dim, layer_scale)

    @classmethod
    def token_mixer_dim(cls, dim: int, channel_hidden: int) -> int:
        return channel_hidden // 2

    @classmethod
    def arg_errors(cls, *, mlp: object, channel_hidden: object = None, **kw: object) -> list[str]:
        errors = super().arg_errors(mlp=mlp, **kw)
        if isinstance(channel_hidden, int) and (channel_hidden < 2 or channel_hidden % 2):
            errors.append(f"model.channel_ratio gives a channel hidden size {channel_hidden}, "
                          f"which the gated block splits in two halves; valid: an even "
                          f"int(channel_ratio * dim) >= 2")
        return errors

    def build_channel_mlp(self, mlp: str, dim: int, hidden: int, bias: bool) -> nn.Module:
        return GatedMlp(dim, hidden, bias=bias)

    def spatial_gate(self, v: Tensor) -> Tensor:
        """(B, S, h/2) -> (B, S, h/2): the token side of the spatial gating unit."""
        return self.token_mlp(self.norm_v(v))

    def step(self, x: Tensor) -> Tensor:  # x: (B, S, C)
        return x + self.drop_path(self.ls(self.channel_mlp(self.norm(x), self.spatial_gate)))


BLOCKS: dict[str, type[_MixingBlock]] = {
    "serial": SerialBlock,
    "parallel": ParallelBlock,
    "gated": GatedBlock,
}

# the energy-based MetaFormer block subclasses _MixingBlock, so it is imported after it
from models.energy_metaformer import EnergyBlock  # noqa: E402

BLOCKS["energy"] = EnergyBlock
