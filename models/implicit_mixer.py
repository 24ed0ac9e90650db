"""iMixer's token mixer (Ota and Taki, arXiv:2304.13061): an MLP whose hidden layer is the
inverse of (I - F), found by fixed-point iteration, with F kept contractive so the inverse
exists.

For each channel's column v of the (B, S, C) table (size S, mixing along tokens), hidden
size h = int(token_ratio * C):

    u   = W_in v + b_in                                   W_in (h, S)      read
    y   = (I - F)^{-1} u,  i.e. the solution of  y = u + F(y)
    out = W_out GELU(y) + b_out                           W_out (S, h)     write

    F(y) = A2 GELU(A1 GELU(y) + a1) + a2                  A1, A2 (h, h): the inner MLP

Biases follow ``model.mlp_bias`` (the authors' iMLP had them; the zoo's default is without).
The inner MLP F is the invertible-ResNet block of the paper's iMLP: in the Hopfield picture
the hidden layer propagates back from the output side, so the token mixer is implicit.

Contraction. With A_k's spectral norm at most c and GELU's Lipschitz constant
L = max GELU'(z) = GELU'(sqrt 2) = 1.1289, Lip(F) <= L^2 c^2. The knob ``contraction`` (kappa,
0 < kappa < 1, default 0.9) is that bound: each A_k is softly normalised to spectral norm
c = sqrt(kappa) / L,

    A_eff = A / max(1, sigma(A) / c),

with sigma(A) estimated by power iteration (persistent vectors, ``power_iters`` steps per
training forward, gradient through sigma as in spectral normalisation; none in eval mode).
Then y -> u + F(y) is a contraction with constant kappa: the fixed point y* exists, is
unique, and the iterates converge geometrically, |y_k - y*| <= kappa^k |y_0 - y*|.
(The authors' code bounds each weight by 0.9, which bounds Lip(F) only by (0.9 L)^2 = 1.03;
here the bound on F itself is the knob.)

Iteration. y_0 = u, y_{k+1} = u + F(y_k), k < ``implicit_iters`` (the authors' n_repeat, 4),
the fixed-point approximation of the paper; gradients flow through the unrolled iterations,
as in the authors' code. With more iterations the output approaches the exact
(I - F)^{-1} u (tests/test_zoo_hopfield.py checks it against a Newton solve).

The read / write pair (W_in, W_out) is independent, as the paper defines it: the MLP kind of
the model shapes only its channel MLPs; ``symmetry()`` measures how close W_out is to W_in^T
with the vanilla MLP's measures (models/symmetry.py).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from models.mlp import mix
from models.symmetry import cosine_symmetry, symmetric_fraction

# max_z GELU'(z) = Phi(sqrt 2) + sqrt 2 phi(sqrt 2): the Lipschitz constant of GELU
GELU_LIPSCHITZ = 0.5 * (1.0 + math.erf(1.0)) + math.sqrt(2.0) * math.exp(-1.0) / math.sqrt(
    2.0 * math.pi)
INIT_POWER_ITERS = 50  # at init: start from an accurate sigma even in eval mode


def _is_int(v: object) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


class SpectralLinear(nn.Module):
    """A (features x features) linear map along ``mix_dim`` with its weight softly normalised
    to spectral norm <= ``coeff``: A_eff = A / max(1, sigma(A) / coeff).

    sigma(A) = u^T A v with u, v the leading singular vectors, kept as buffers and refined by
    ``power_iters`` power-iteration steps at every training forward (no gradient through u, v;
    the gradient reaches A through sigma, as in spectral normalisation).
    """

    def __init__(self, features: int, *, coeff: float, power_iters: int, bias: bool,
                 mix_dim: int = -2) -> None:
        super().__init__()
        self.coeff, self.power_iters, self.mix_dim = coeff, power_iters, mix_dim
        self.weight = nn.Parameter(torch.empty(features, features))
        self.bias = nn.Parameter(torch.zeros(features)) if bias else None
        self.register_buffer("u", torch.zeros(features))
        self.register_buffer("v", torch.zeros(features))
        self.init_weights()

    def init_weights(self) -> None:
        nn.init.xavier_uniform_(self.weight)
        if self.bias is not None:
            nn.init.normal_(self.bias, std=1e-6)  # Mixer init of hidden biases
        with torch.no_grad():
            self.u.copy_(F.normalize(torch.randn_like(self.u), dim=0))
            self.v.copy_(F.normalize(torch.randn_like(self.v), dim=0))
        self.power_iteration(INIT_POWER_ITERS)

    @torch.no_grad()
    def power_iteration(self, steps: int) -> None:
        """Refine the singular-vector estimates u, v in place."""
        w = self.weight.detach().float()
        u, v = self.u.float(), self.v.float()
        for _ in range(steps):
            v = F.normalize(w.t() @ u, dim=0, eps=1e-12)
            u = F.normalize(w @ v, dim=0, eps=1e-12)
        self.u.copy_(u)
        self.v.copy_(v)

    def sigma(self) -> Tensor:
        """The spectral-norm estimate u^T A v (differentiable in A)."""
        # clones: a later forward refines the buffers in place, and autograd keeps these
        return self.u.clone().to(self.weight.dtype) @ self.weight @ self.v.clone().to(
            self.weight.dtype)

    def effective_weight(self) -> Tensor:
        """A_eff = A / max(1, sigma / coeff); refines u, v first when training. In full
        precision under autocast: a bf16 sigma would loosen the bound by ~0.4 %."""
        with torch.autocast(self.weight.device.type, enabled=False):
            if self.training:
                self.power_iteration(self.power_iters)
            return self.weight / torch.clamp(self.sigma() / self.coeff, min=1.0)

    def forward(self, y: Tensor) -> Tensor:
        return mix(y, self.effective_weight(), self.bias, self.mix_dim)


class ImplicitTokenMixer(nn.Module):
    """iMixer's token mixer out = W_out GELU((I - F)^{-1} (W_in v)) along tokens (module
    docstring). Token-mixer interface of models/token_mixer.py; registered there as
    ``implicit``. Knobs: ``implicit_iters`` (fixed-point iterations, >= 1), ``contraction``
    (the bound kappa on Lip(F), 0 < kappa < 1), ``power_iters`` (power-iteration steps per
    training forward, >= 1)."""

    has_v: ClassVar[bool] = False
    tied: ClassVar[bool] = False
    uses_mlp_kind: ClassVar[bool] = False

    def __init__(self, *, dim: int, seq_len: int, hidden: int, mlp: str, bias: bool,
                 implicit_iters: int = 4, contraction: float = 0.9, power_iters: int = 8,
                 **_: object) -> None:
        super().__init__()
        errors = self.arg_errors(dim=dim, seq_len=seq_len, hidden=hidden, mlp=mlp, bias=bias,
                                 implicit_iters=implicit_iters, contraction=contraction,
                                 power_iters=power_iters)
        if errors:
            raise ValueError("; ".join(errors))
        self.implicit_iters = implicit_iters
        self.contraction = float(contraction)
        coeff = math.sqrt(self.contraction) / GELU_LIPSCHITZ  # per inner weight
        self.w_in = nn.Parameter(torch.empty(hidden, seq_len))
        self.b_in = nn.Parameter(torch.zeros(hidden)) if bias else None
        self.inner1 = SpectralLinear(hidden, coeff=coeff, power_iters=power_iters, bias=bias)
        self.inner2 = SpectralLinear(hidden, coeff=coeff, power_iters=power_iters, bias=bias)
        self.w_out = nn.Parameter(torch.empty(seq_len, hidden))
        self.b_out = nn.Parameter(torch.zeros(seq_len)) if bias else None
        self.init_weights()

    @classmethod
    def arg_errors(cls, *, implicit_iters: object = 4, contraction: object = 0.9,
                   power_iters: object = 8, **_: object) -> list[str]:
        """Every invalid iMixer knob, as 'model.<key>=<value> is invalid; ...'."""
        errors = []
        if not (_is_int(implicit_iters) and implicit_iters >= 1):
            errors.append(f"model.implicit_iters={implicit_iters!r} is invalid; it must be an "
                          "integer >= 1 (fixed-point iterations of the iMixer token mixer)")
        if not (isinstance(contraction, numbers.Real) and not isinstance(contraction, bool)
                and 0.0 < contraction < 1.0):
            errors.append(f"model.contraction={contraction!r} is invalid; it must be in (0, 1) "
                          "(the bound on Lip(F) that makes I - F invertible)")
        if not (_is_int(power_iters) and power_iters >= 1):
            errors.append(f"model.power_iters={power_iters!r} is invalid; it must be an "
                          "integer >= 1 (power-iteration steps of the spectral norm)")
        return errors

    def init_weights(self) -> None:
        nn.init.xavier_uniform_(self.w_in)
        nn.init.xavier_uniform_(self.w_out)
        if self.b_in is not None:
            nn.init.normal_(self.b_in, std=1e-6)
            nn.init.zeros_(self.b_out)
        self.inner1.init_weights()
        self.inner2.init_weights()

    def inner_map(self) -> Callable[[Tensor], Tensor]:
        """F(y) = A2 GELU(A1 GELU(y) + a1) + a2 along the hidden axis (-2), with the normalised
        weights computed once (one power iteration per forward, however many iterations)."""
        a1, a2 = self.inner1.effective_weight(), self.inner2.effective_weight()
        b1, b2 = self.inner1.bias, self.inner2.bias
        return lambda y: mix(F.gelu(mix(F.gelu(y), a1, b1, -2)), a2, b2, -2)

    def solve(self, u: Tensor, iters: int | None = None,
              residuals: list[float] | None = None) -> Tensor:
        """y_k for y_0 = u, y_{k+1} = u + F(y_k), after ``iters`` (default implicit_iters)
        steps; u (B, h, C). ``residuals`` gets |y_{k+1} - y_k| (Frobenius, over the batch) of
        each step: F acts on each (sample, channel) column alone, so its contraction holds for
        the whole tensor and the residuals shrink at least by ``contraction`` per step."""
        f = self.inner_map()
        y = u
        for _ in range(self.implicit_iters if iters is None else iters):
            y_next = u + f(y)
            if residuals is not None:
                residuals.append(float((y_next - y).detach().norm()))
            y = y_next
        return y

    def forward(self, x: Tensor) -> Tensor:  # (B, S, C) -> (B, S, C)
        u = mix(x, self.w_in, self.b_in, -2)  # (B, h, C)
        return mix(F.gelu(self.solve(u)), self.w_out, self.b_out, -2)

    def regularizer(self) -> Tensor:
        return self.w_in.new_zeros(())

    def symmetry(self) -> dict[str, float]:
        """How close the write W_out is to the read W_in^T (as the vanilla MLP's)."""
        return {"cos": cosine_symmetry(self.w_in, self.w_out),
                "symfrac": symmetric_fraction(self.w_in, self.w_out)}
