"""The three MLP kinds of the paper, each mixing one axis of a (B, S, C) table.

For a vector v along the mixed axis (size d = S for token mixing, d = C for channel mixing)
and hidden size h:

    vanilla     MLP(v) = W2 act(W1 v + b1) + b2          W1 (h, d), W2 (d, h), optional biases
    symmetric   MLP(v) = W^T act(W v)                     one W (h, d): read with W, write with W^T
    asymmetric  MLP(v) = W^T act(W v) + V act(W v)        W (h, d), V (d, h); sb_lambda ||V||_F^2

act is GELU. The symmetric kind is the interaction of the hierarchical Hopfield network
(weights are tied, so the block update is the gradient of an energy); V in the asymmetric kind
is the symmetry-breaking term.

Each MLP mixes along ``mix_dim`` of its input: -1 mixes channels (x @ W^T), -2 mixes tokens
(W @ x), so a block never needs to know which axis its MLPs act on.

Each kind says what it is through two class attributes, so no caller needs its name:
``has_v`` (it has the symmetry-breaking V that ``sb_lambda`` penalises) and ``tied`` (it writes
back with the transpose of the W it reads with: the Hopfield interaction). ``interaction_weights``
gives (W, V) as the energy of models/energy.py reads them.

Initial weights (``init_weights``; the controls of the symmetry claims), chosen per model by
``model.init`` and ``model.v_init`` and listed per kind in ``inits`` / ``v_inits``:

    init=default     xavier-uniform W1, W2 (W, V): the authors' init
    init=tied        vanilla only: W1 xavier-uniform, W2 = W1^T, so cos = symfrac = 1 at step 0
                     (xavier's bound sqrt(6 / (h + d)) is the same for W1 and W2, so W2 keeps
                     its default distribution; with biases, b1 ~ N(0, 1e-6) and b2 = 0 as by
                     default, so the MLP starts as W1^T act(W1 v) to within 1e-6)
    v_init=default   asymmetric: V xavier-uniform, as large as W (the authors' init)
    v_init=zero      asymmetric: V = 0, so the MLP starts as the symmetric one with the same W
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from models.symmetry import cosine_symmetry, symmetric_fraction


def mix(x: Tensor, weight: Tensor, bias: Tensor | None = None, mix_dim: int = -1) -> Tensor:
    """Apply the linear map ``weight`` (out, in) along axis ``mix_dim`` of x.

    mix_dim = -1: (..., in) -> (..., out), i.e. F.linear.
    mix_dim = -2: (B, in, C) -> (B, out, C), i.e. weight @ x with the bias broadcast over C.
    """
    if mix_dim == -1:
        return F.linear(x, weight, bias)
    # (B, in, C) -> (B, C, in) view -> one GEMM over B*C rows -> (B, C, out) -> (B, out, C) view.
    # Measured faster on CPU than the broadcast batched matmul weight @ x (11.6 vs 19.9 ms
    # forward + backward at B 128, S 49, C 128), and the transposes are views, not copies.
    return F.linear(x.transpose(-1, -2), weight, bias).transpose(-1, -2)


def _check_init(cls: type[nn.Module], init: str, v_init: str) -> None:
    if init not in cls.inits:
        raise ValueError(f"init={init!r} is not valid for {cls.__name__}; valid: {list(cls.inits)}")
    if v_init not in cls.v_inits:
        raise ValueError(f"v_init={v_init!r} is not valid for {cls.__name__}; "
                         f"valid: {list(cls.v_inits)}")


class _InitChoice:
    """``init`` / ``v_init``: which initial weights ``init_weights`` draws (module docstring)."""

    inits: ClassVar[tuple[str, ...]] = ("default",)
    v_inits: ClassVar[tuple[str, ...]] = ("default",)
    init: str
    v_init: str

    def configure_init(self, init: str = "default", v_init: str = "default") -> None:
        """Choose the scheme of the next ``init_weights`` (models.Mixer calls it, then
        initialises); raises ValueError on a scheme this kind does not have."""
        _check_init(type(self), init, v_init)
        self.init, self.v_init = init, v_init


def _check_sizes(dim: int, hidden: int, mix_dim: int) -> None:
    if dim < 1 or hidden < 1:
        raise ValueError(f"MLP sizes must be >= 1, got dim={dim}, hidden={hidden}")
    if mix_dim not in (-1, -2):
        raise ValueError(f"mix_dim must be -1 (channels) or -2 (tokens), got {mix_dim}")


class VanillaMlp(_InitChoice, nn.Module):
    """W2 act(W1 v + b1) + b2 (biases optional: the authors ran without them)."""

    has_v: ClassVar[bool] = False
    tied: ClassVar[bool] = False
    inits: ClassVar[tuple[str, ...]] = ("default", "tied")

    def __init__(self, dim: int, hidden: int, mix_dim: int = -1, bias: bool = False,
                 init: str = "default", v_init: str = "default") -> None:
        super().__init__()
        _check_sizes(dim, hidden, mix_dim)
        self.configure_init(init, v_init)
        self.mix_dim = mix_dim
        self.w1 = nn.Parameter(torch.empty(hidden, dim))
        self.w2 = nn.Parameter(torch.empty(dim, hidden))
        self.b1 = nn.Parameter(torch.zeros(hidden)) if bias else None
        self.b2 = nn.Parameter(torch.zeros(dim)) if bias else None
        self.init_weights()

    def init_weights(self) -> None:
        nn.init.xavier_uniform_(self.w1)
        if self.init == "tied":
            with torch.no_grad():
                self.w2.copy_(self.w1.t())
        else:
            nn.init.xavier_uniform_(self.w2)
        # Mixer init: small normal biases on the hidden layer, zero on the output
        if self.b1 is not None:
            nn.init.normal_(self.b1, std=1e-6)
            nn.init.zeros_(self.b2)

    def forward(self, x: Tensor) -> Tensor:
        h = F.gelu(mix(x, self.w1, self.b1, self.mix_dim))
        return mix(h, self.w2, self.b2, self.mix_dim)

    def regularizer(self) -> Tensor:
        return self.w1.new_zeros(())

    def interaction_weights(self) -> tuple[Tensor, Tensor | None]:
        """(W, V) = (W1, W2 - W1^T): W^T act(W v) + V act(W v) is then exactly this MLP's
        output. Only without biases (a bias has no place in the energy)."""
        if self.b1 is not None:
            raise ValueError("the energy is defined for MLPs without biases (mlp_bias=false)")
        return self.w1, self.w2 - self.w1.t()

    def symmetry(self) -> dict[str, float]:
        """How close W2 is to W1^T (1 would be the tied, Hopfield-like model)."""
        return {
            "cos": cosine_symmetry(self.w1, self.w2),
            "symfrac": symmetric_fraction(self.w1, self.w2),
        }


class SymmetricMlp(_InitChoice, nn.Module):
    """W^T act(W v): one weight, read with W and written back with W^T."""

    has_v: ClassVar[bool] = False
    tied: ClassVar[bool] = True

    def __init__(self, dim: int, hidden: int, mix_dim: int = -1, bias: bool = False,
                 init: str = "default", v_init: str = "default") -> None:
        super().__init__()
        _check_sizes(dim, hidden, mix_dim)
        self.configure_init(init, v_init)
        if bias:
            raise ValueError("bias=True is not valid for the symmetric MLP (it has no biases)")
        self.mix_dim = mix_dim
        self.w = nn.Parameter(torch.empty(hidden, dim))
        self.init_weights()

    def init_weights(self) -> None:
        nn.init.xavier_uniform_(self.w)

    def forward(self, x: Tensor) -> Tensor:
        h = F.gelu(mix(x, self.w, None, self.mix_dim))
        return mix(h, self.w.t(), None, self.mix_dim)

    def regularizer(self) -> Tensor:
        return self.w.new_zeros(())

    def interaction_weights(self) -> tuple[Tensor, Tensor | None]:
        """(W, None): tied, no symmetry-breaking term."""
        return self.w, None

    def symmetry(self) -> dict[str, float]:
        return {}  # tied by construction: every measure is exactly 1


class AsymmetricMlp(_InitChoice, nn.Module):
    """W^T act(W v) + V act(W v): the symmetric MLP plus a symmetry-breaking write-back V.

    ``regularizer()`` returns ||V||_F^2; the model multiplies it by ``sb_lambda``.
    """

    has_v: ClassVar[bool] = True
    tied: ClassVar[bool] = True
    v_inits: ClassVar[tuple[str, ...]] = ("default", "zero")

    def __init__(self, dim: int, hidden: int, mix_dim: int = -1, bias: bool = False,
                 init: str = "default", v_init: str = "default") -> None:
        super().__init__()
        _check_sizes(dim, hidden, mix_dim)
        self.configure_init(init, v_init)
        if bias:
            raise ValueError("bias=True is not valid for the asymmetric MLP (it has no biases)")
        self.mix_dim = mix_dim
        self.w = nn.Parameter(torch.empty(hidden, dim))
        self.v = nn.Parameter(torch.empty(dim, hidden))
        self.init_weights()

    def init_weights(self) -> None:
        nn.init.xavier_uniform_(self.w)
        if self.v_init == "zero":  # starts as the symmetric MLP with the same W
            nn.init.zeros_(self.v)
        else:
            nn.init.xavier_uniform_(self.v)

    def forward(self, x: Tensor) -> Tensor:
        h = F.gelu(mix(x, self.w, None, self.mix_dim))
        # one matmul for both write-backs: [W^T | V] would need a concat per step, while
        # (W^T + V) h is the same sum with a single product
        return mix(h, self.w.t() + self.v, None, self.mix_dim)

    def regularizer(self) -> Tensor:
        return self.v.pow(2).sum()

    def interaction_weights(self) -> tuple[Tensor, Tensor | None]:
        """(W, V)."""
        return self.w, self.v

    def symmetry(self) -> dict[str, float]:
        """||V||_F / ||W||_F (effective symmetry-breaking strength) and the symmetry of the
        effective write-back W^T + V against the read W."""
        w, v = self.w.detach(), self.v.detach()
        return {
            "v_ratio": float(v.norm() / w.norm().clamp_min(1e-12)),
            "cos": cosine_symmetry(w, w.t() + v),
        }


MLP_KINDS: dict[str, type[nn.Module]] = {
    "vanilla": VanillaMlp,
    "symmetric": SymmetricMlp,
    "asymmetric": AsymmetricMlp,
}


INITS: tuple[str, ...] = tuple(dict.fromkeys(i for k in MLP_KINDS.values() for i in k.inits))
"""Every ``init`` some MLP kind has (``model.init``)."""
V_INITS: tuple[str, ...] = tuple(dict.fromkeys(i for k in MLP_KINDS.values() for i in k.v_inits))
"""Every ``v_init`` some MLP kind has (``model.v_init``)."""


def build_mlp(kind: str, dim: int, hidden: int, mix_dim: int, bias: bool = False,
              init: str = "default", v_init: str = "default") -> nn.Module:
    """The MLP of the given kind (one of MLP_KINDS)."""
    if kind not in MLP_KINDS:
        raise ValueError(f"unknown MLP kind {kind!r}; valid kinds: {sorted(MLP_KINDS)}")
    return MLP_KINDS[kind](dim=dim, hidden=hidden, mix_dim=mix_dim, bias=bias, init=init,
                           v_init=v_init)
