"""The Hopfield energy of a parallel block and the continuous dynamics it drives.

State x (S, C) (or a batch (..., S, C)); n = LN(x) is the layer norm over the whole table
without affine parameters, n = (x - mean) / rms(x - mean), the gradient of the degree-1
homogeneous Lagrangian sqrt(S C) ||x - mean(x)||_F, so the visible-layer term of the energy
vanishes identically. With Phi a primitive of GELU, token weights W_s (h_s, S) and channel
weights W_c (h_c, C):

    E(x) = - sum Phi(W_s n) - sum Phi(n W_c^T)

    dx/dt = W_s^T GELU(W_s n) + GELU(n W_c^T) W_c  [+ V_s GELU(W_s n) + GELU(n W_c^T) V_c^T]  - x

Without the bracketed symmetry-breaking terms dE/dt = -(dx/dt)^T J (dx/dt) <= 0 (J = dn/dx
is symmetric positive semi-definite, J x = 0). With V_s (S, h_s), V_c (C, h_c) the guarantee
is gone.

A trained block maps onto this by ``block_weights``: a symmetric MLP gives W; an asymmetric
one W and V; a vanilla MLP (W1, W2) is read as W = W1, V = W2 - W1^T, which reproduces its
output exactly. The block's LayerNorm affine parameters are not part of the energy and are
left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from models.variants import VARIANTS


def gelu_primitive(z: Tensor) -> Tensor:
    """Phi(z) with Phi' = GELU (exact erf form) and Phi(0) = 0.

    Phi(z) = (z^2 + (z^2 - 1) erf(z / sqrt 2) + z sqrt(2/pi) exp(-z^2 / 2)) / 4
    """
    z2 = z * z
    return 0.25 * (z2 + (z2 - 1) * torch.erf(z / math.sqrt(2.0))
                   + z * math.sqrt(2.0 / math.pi) * torch.exp(-0.5 * z2))


def table_norm(x: Tensor, eps: float = 0.0) -> Tensor:
    """(x - mean) / rms(x - mean) over the last two axes (S, C); no affine parameters."""
    centered = x - x.mean(dim=(-2, -1), keepdim=True)
    return centered / torch.sqrt(centered.pow(2).mean(dim=(-2, -1), keepdim=True) + eps)


@dataclass
class BlockWeights:
    """Interaction weights of a parallel block: W_s (h_s, S), W_c (h_c, C) and the optional
    symmetry-breaking V_s (S, h_s), V_c (C, h_c)."""

    w_s: Tensor
    w_c: Tensor
    v_s: Tensor | None = None
    v_c: Tensor | None = None

    def to(self, dtype: torch.dtype) -> BlockWeights:
        cast = lambda t: None if t is None else t.detach().to(dtype)  # noqa: E731
        return BlockWeights(cast(self.w_s), cast(self.w_c), cast(self.v_s), cast(self.v_c))


def block_weights(block: torch.nn.Module) -> BlockWeights:
    """The interaction weights of a trained parallel block (see module docstring): the block
    hands over its MLPs (refusing a wiring with no energy), each MLP its (W, V)."""
    energy_mlps = getattr(block, "energy_mlps", None)
    if energy_mlps is None:
        raise ValueError(f"the energy is defined for Mixer blocks, got {type(block).__name__}")
    try:
        token_mlp, channel_mlp = energy_mlps()
    except ValueError as err:
        valid = [v.name for v in VARIANTS.values() if v.has_energy]
        raise ValueError(f"{err}; valid models: {', '.join(valid)}") from err
    w_s, v_s = token_mlp.interaction_weights()
    w_c, v_c = channel_mlp.interaction_weights()
    return BlockWeights(w_s.detach(), w_c.detach(),
                        None if v_s is None else v_s.detach(),
                        None if v_c is None else v_c.detach())


def energy(x: Tensor, w: BlockWeights, eps: float = 0.0) -> Tensor:
    """E(x) for x (..., S, C); returns (...). Uses only W_s and W_c (V has no energy)."""
    n = table_norm(x, eps)
    token = gelu_primitive(torch.matmul(w.w_s, n))  # (..., h_s, C)
    channel = gelu_primitive(torch.matmul(n, w.w_c.t()))  # (..., S, h_c)
    return -token.sum(dim=(-2, -1)) - channel.sum(dim=(-2, -1))


def velocity(x: Tensor, w: BlockWeights, eps: float = 0.0) -> Tensor:
    """dx/dt of the continuous dynamics for x (..., S, C); see module docstring."""
    n = table_norm(x, eps)
    a_s = F.gelu(torch.matmul(w.w_s, n))  # (..., h_s, C)
    a_c = F.gelu(torch.matmul(n, w.w_c.t()))  # (..., S, h_c)
    write_s = w.w_s.t() if w.v_s is None else w.w_s.t() + w.v_s  # (S, h_s)
    write_c = w.w_c if w.v_c is None else w.w_c + w.v_c.t()  # (h_c, C)
    return torch.matmul(write_s, a_s) + torch.matmul(a_c, write_c) - x


@dataclass
class EnergyTrace:
    """Energy along an Euler integration: times (T,), energies (T,) and how many steps
    increased the energy by more than ``tol``."""

    times: Tensor
    energies: Tensor
    n_increases: int
    final_state: Tensor


@torch.no_grad()
def integrate(
    x0: Tensor,
    weights: BlockWeights,
    dt: float = 1e-3,
    steps: int = 20_000,
    record_every: int = 1,
    eps: float = 0.0,
    tol: float = 0.0,
    dtype: torch.dtype = torch.float64,
) -> EnergyTrace:
    """Integrate dx/dt with explicit Euler from x0 (S, C) and record E along the way.

    An increase is counted whenever E(x_{t+1}) > E(x_t) + tol at any step (not only at the
    recorded ones). Computed in float64 by default so rounding does not masquerade as an
    energy increase.
    """
    if dt <= 0 or steps < 1 or record_every < 1:
        raise ValueError("need dt > 0, steps >= 1, record_every >= 1; "
                         f"got {dt}, {steps}, {record_every}")
    w = weights.to(dtype)
    x = x0.detach().to(dtype)
    e_prev = energy(x, w, eps)
    times, energies, increases = [0.0], [float(e_prev)], 0
    for step in range(1, steps + 1):
        x = x + dt * velocity(x, w, eps)
        e = energy(x, w, eps)
        increases += int(e > e_prev + tol)
        e_prev = e
        if step % record_every == 0 or step == steps:
            times.append(step * dt)
            energies.append(float(e))
    # float64 like the integration: a rise of 0.3 on E ~ -3e4 is near float32's resolution
    return EnergyTrace(torch.tensor(times, dtype=dtype), torch.tensor(energies, dtype=dtype),
                       increases, x)
