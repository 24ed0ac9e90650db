"""Token mixers: the slot of a Mixer block that mixes information across the S tokens.

x is the (B, S, C) table of S tokens and C channels; every token mixer maps it to (B, S, C).

    mlp        the token MLP of the model's MLP kind (models/mlp.py), mixing along S:
               vanilla W2 act(W1 v), symmetric W^T act(W v), asymmetric W^T act(W v) + V act(W v)
               for each channel's column v (size S), hidden h = int(token_ratio * C)
               (MLP-Mixer, ParaMixer, SymMixer, AsymMixer)
    linear     ResMLP (Touvron et al. 2021): y = W x + b along tokens, one W (S, S), b (S)
    attention  multi-head self-attention (ViT): per head k of H = num_heads, d = C / H,
               Q_k, K_k, V_k = x Wq_k^T, x Wk_k^T, x Wv_k^T   (S, d) each
               y = concat_k softmax(Q_k K_k^T / sqrt d) V_k  Wo^T       Wqkv (3C, C), Wo (C, C)
               no position information: it is permutation-equivariant over tokens
    gating     the spatial projection of gMLP's spatial gating unit (Liu et al. 2021):
               y = W x + b along tokens, W (S, S) initialised ~0 (normal, std 1e-6), b = 1,
               so that the gate u * y starts as u * 1; used by the ``gated`` block on the
               half v of its hidden layer (models/block.py), with a LayerNorm before it
    implicit   iMixer's token mixer (Ota and Taki 2023): W_out GELU((I - F)^{-1} (W_in v)) along
               tokens, F a contractive MLP, the inverse by fixed-point iteration
               (models/implicit_mixer.py; knobs implicit_iters, contraction, power_iters)

Where the MLP kind applies: only the ``mlp`` token mixer is built from it. ``linear``,
``attention`` and ``gating`` have no read / write pair of matrices that could be tied (W^T),
so the symmetric / asymmetric kinds are not defined for them: they are the same for every
``model.mlp`` (which then shapes only the channel MLPs), have no V and measure no symmetry.
Biases of ``linear`` and ``attention`` follow ``model.mlp_bias`` (default false, as the
authors ran their Mixers; ResMLP and ViT had them: ``model.mlp_bias=true``); ``gating`` always
has its bias, which makes it a gate.

The interface every token mixer implements (register a new one in TOKEN_MIXERS):

    __init__(self, *, dim: int, seq_len: int, hidden: int, mlp: str, bias: bool, **kw)
        dim: channels C of its input; seq_len: tokens S; hidden: the token hidden size
        int(token_ratio * C) (a mixer without a hidden layer ignores it); mlp: the model's MLP
        kind (a key of models.mlp.MLP_KINDS); bias: model.mlp_bias; kw: every other token-mixer
        knob of models.Mixer (e.g. num_heads), each mixer taking the ones it uses and
        ignoring the rest
    forward(x) -> Tensor                     (B, S, C) -> (B, S, C)
    init_weights() -> None                   re-draws its parameters (Mixer.init_weights)
    regularizer() -> Tensor                  the part of the sb_lambda penalty it owns
                                             (||V||_F^2 for a V; a 0-dim zero when none)
    symmetry() -> dict[str, float]           its weight-symmetry measures ({} when none)
    class attributes, read by the variant table and the energy without building a model:
        has_v: bool          it has a symmetry-breaking V penalised by sb_lambda
        tied: bool           it reads with W and writes back with W^T (Hopfield interaction)
        uses_mlp_kind: bool  it is built from the MLP kind: then has_v and tied are the kind's
                             (``token_mixer_traits``) and it offers interaction_weights()
    classmethod arg_errors(*, dim, seq_len, hidden, mlp, bias, **kw) -> list[str]
        every invalid knob as 'model.<key>=<value> ...; valid: ...' (builds nothing), so a
        sweep refuses a bad combination before any job launches

``TokenMixer`` gives the defaults (no V, not tied, zero regularizer, no symmetry, no errors).
The ``mlp`` entry is special so that the four paper variants keep exactly their parameters
and state-dict keys: ``MlpTokenMixer(...)`` returns the MLP kind's own module mixing along
tokens (``mix_dim=-2``), e.g. a ``VanillaMlp`` with ``w1``, ``w2``.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from models.implicit_mixer import ImplicitTokenMixer
from models.mlp import MLP_KINDS, build_mlp, mix


class TokenMixer(nn.Module):
    """Base of the token mixers: the interface's defaults (see the module docstring)."""

    has_v: ClassVar[bool] = False
    tied: ClassVar[bool] = False
    uses_mlp_kind: ClassVar[bool] = False

    @classmethod
    def arg_errors(cls, **_: object) -> list[str]:
        return []

    def init_weights(self) -> None:  # pragma: no cover - defined by each token mixer
        raise NotImplementedError

    def regularizer(self) -> Tensor:
        p = next(self.parameters(), None)
        return torch.zeros(()) if p is None else p.new_zeros(())

    def symmetry(self) -> dict[str, float]:
        return {}


class MlpTokenMixer(TokenMixer):
    """The token MLP of the model's MLP kind: ``MlpTokenMixer(dim=C, seq_len=S, hidden=h,
    mlp=kind, bias=b)`` returns ``MLP_KINDS[kind](dim=S, hidden=h, mix_dim=-2, bias=b)``, the
    module today's paper variants hold as ``blk.token_mlp`` (same parameters, same keys)."""

    uses_mlp_kind: ClassVar[bool] = True

    def __new__(cls, *, dim: int, seq_len: int, hidden: int, mlp: str, bias: bool,
                **_: object) -> nn.Module:
        return build_mlp(mlp, seq_len, hidden, mix_dim=-2, bias=bias)


class LinearTokenMixer(TokenMixer):
    """ResMLP's token mixing: y = W x + b along tokens, W (S, S) xavier-uniform, b = 0."""

    def __init__(self, *, dim: int, seq_len: int, hidden: int, mlp: str, bias: bool,
                 **_: object) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(seq_len, seq_len))
        self.bias = nn.Parameter(torch.empty(seq_len)) if bias else None
        self.init_weights()

    def init_weights(self) -> None:
        nn.init.xavier_uniform_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:  # (B, S, C) -> (B, S, C)
        return mix(x, self.weight, self.bias, mix_dim=-2)


class GatingTokenMixer(LinearTokenMixer):
    """gMLP's spatial projection: y = W x + b along tokens with W ~ N(0, 1e-6^2), b = 1 (the
    bias is always there: it is what makes u * y start as u)."""

    def __init__(self, *, dim: int, seq_len: int, hidden: int, mlp: str, bias: bool,
                 **kw: object) -> None:
        super().__init__(dim=dim, seq_len=seq_len, hidden=hidden, mlp=mlp, bias=True, **kw)

    def init_weights(self) -> None:
        nn.init.normal_(self.weight, std=1e-6)
        nn.init.ones_(self.bias)


class AttentionTokenMixer(TokenMixer):
    """Multi-head self-attention over tokens (ViT), without position information.

    Wqkv (3C, C), Wo (C, C), xavier-uniform (as the MLPs), biases zero when present."""

    def __init__(self, *, dim: int, seq_len: int, hidden: int, mlp: str, bias: bool,
                 num_heads: int = 4, **_: object) -> None:
        super().__init__()
        errors = self.arg_errors(dim=dim, num_heads=num_heads)
        if errors:
            raise ValueError("; ".join(errors))
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.proj = nn.Linear(dim, dim, bias=bias)
        self.init_weights()

    @classmethod
    def arg_errors(cls, *, dim: object, num_heads: object = 4, **_: object) -> list[str]:
        if not isinstance(num_heads, int) or isinstance(num_heads, bool) or num_heads < 1:
            return [f"model.num_heads={num_heads!r} is invalid; it must be an integer >= 1 "
                    f"that divides model.dim"]
        if isinstance(dim, int) and dim % num_heads:
            return [f"model.num_heads={num_heads} does not divide the attention's width {dim} "
                    f"(model.dim; half the channel hidden size in a gated block); valid: "
                    f"{[h for h in range(1, dim + 1) if dim % h == 0]}"]
        return []

    def init_weights(self) -> None:
        for lin in (self.qkv, self.proj):
            nn.init.xavier_uniform_(lin.weight)
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)

    def forward(self, x: Tensor) -> Tensor:  # (B, S, C) -> (B, S, C)
        b, s, c = x.shape
        # (B, S, 3, H, d) -> 3 x (B, H, S, d)
        q, k, v = self.qkv(x).reshape(b, s, 3, self.num_heads, c // self.num_heads).unbind(2)
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                           v.transpose(1, 2))
        return self.proj(y.transpose(1, 2).reshape(b, s, c))


TOKEN_MIXERS: dict[str, type[nn.Module]] = {
    "mlp": MlpTokenMixer,
    "linear": LinearTokenMixer,
    "attention": AttentionTokenMixer,
    "gating": GatingTokenMixer,
    "implicit": ImplicitTokenMixer,  # iMixer (models/implicit_mixer.py)
}


def token_mixer_traits(token_mixer: str, mlp: str) -> type:
    """The class whose ``has_v`` and ``tied`` describe token mixer ``token_mixer`` in a model of
    MLP kind ``mlp``: the kind's class for a mixer built from it (``uses_mlp_kind``), the
    token mixer's own class otherwise."""
    cls = TOKEN_MIXERS[token_mixer]
    return MLP_KINDS[mlp] if getattr(cls, "uses_mlp_kind", False) else cls


def build_token_mixer(token_mixer: str, *, dim: int, seq_len: int, hidden: int, mlp: str,
                      bias: bool, **kw: object) -> nn.Module:
    """The token mixer ``token_mixer`` (a key of TOKEN_MIXERS); ValueError naming the valid
    ones otherwise."""
    if token_mixer not in TOKEN_MIXERS:
        raise ValueError(f"unknown token mixer {token_mixer!r}; valid: {sorted(TOKEN_MIXERS)}")
    return TOKEN_MIXERS[token_mixer](dim=dim, seq_len=seq_len, hidden=hidden, mlp=mlp,
                                     bias=bias, **kw)
