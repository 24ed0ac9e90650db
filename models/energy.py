"""The Hopfield energy of a parallel block and the continuous dynamics it drives.

State x (S, C) (or a batch (..., S, C)); n = LN(x) is the layer norm over the whole table
without affine parameters, n = (x - mean) / rms(x - mean), the gradient of the degree-1
homogeneous Lagrangian L(x) = sqrt(S C) ||x - mean(x)||_F, so the visible-layer term
sum(x * n) - L(x) of the energy vanishes identically. With Phi a primitive of GELU, token
weights W_s (h_s, S) and channel weights W_c (h_c, C):

    E(x) = - sum Phi(W_s n) - sum Phi(n W_c^T)

    dx/dt = W_s^T GELU(W_s n) + GELU(n W_c^T) W_c  [+ V_s GELU(W_s n) + GELU(n W_c^T) V_c^T]  - x

Without the bracketed symmetry-breaking terms dE/dt = -(dx/dt)^T J (dx/dt) <= 0 (J = dn/dx
is symmetric positive semi-definite, J x = 0). With V_s (S, h_s), V_c (C, h_c) the guarantee
is gone.

**Pseudo-energy** (the authors' demo notebook demo/demo_asymmixer.ipynb, for the asymmetric
block): the energy plus half the symmetry-breaking write-back read against n,

    E_pseudo(x) = E(x) + 1/2 sum n * (V_s GELU(W_s n)) + 1/2 sum n * (GELU(n W_c^T) V_c^T)

equal to E when V = 0. (The notebook sums n over one axis before the weights, an
approximation for its tiny S, C; here every sum runs over the whole (S, C) table as the
block does. Its visible term uses L = ||x - mean||_F without the sqrt(S C) factor, so it does
not vanish there; here the Lagrangian whose gradient is n is used, and the term is 0.)

**Norm kinds.** ``BlockWeights.norm_dims`` says which trailing axes the norm runs over: 2, the
(S, C) table (the derivation's "symmetric layer norm"), or 1, each token's C channels
(``norm="token"``; its Lagrangian sum_i sqrt(C) ||x_i - mean(x_i)|| is also homogeneous of
degree 1, so the guarantee holds as well). With eps > 0, n = (x - mean) / sqrt(var + eps) is
the gradient of L_eps(x) = sum_groups sqrt(N) sqrt(||x - mean||^2 + N eps) (N elements per
group), no longer homogeneous: E then carries the visible term sum(x * n) - L_eps(x) (of
order -N eps / rms), which keeps dE/dt = -(dx/dt)^T J (dx/dt) exact.

**The block with its trained LayerNorm affine** (``block_weights(block, affine=True)``, the
block the network runs): gain g and bias b of the norm's shape, the block's own eps, and

    n_g = g * LN_eps(x) + b
    E_g(x) = [sum(x * LN_eps(x)) - L_eps(x)] - sum Phi(W_s n_g) - sum Phi(n_g W_c^T)
    dx/dt = f(n_g) - x,   f(n) = W_s^T GELU(W_s n) + GELU(n W_c^T) W_c [+ V terms]

i.e. the same Phi terms evaluated at the affine-normalised state, and the block's own update
(its MLP outputs at x) minus x. Then dE_g/dt = -(G f - x)^T J (f - x) with G = diag(g): with
eps = 0 (J x = 0) this is -f^T G J f, <= 0 for a uniform gain g = c > 0 whatever b is, but of
no sign for a non-uniform gain (G J is not symmetric), so E_g may rise even for the
symmetric block. g = 1, b = 0 gives back E.

A trained block maps onto this by ``block_weights``: a symmetric MLP gives W; an asymmetric
one W and V; a vanilla MLP (W1, W2) is read as W = W1, V = W2 - W1^T, which reproduces its
output exactly. ``block_inputs`` gives the state the network feeds a block (patch embeddings
of images after the blocks before it), to start the dynamics from real inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

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


def _dims(norm_dims: int) -> tuple[int, ...]:
    return (-2, -1) if norm_dims == 2 else (-1,)


def table_norm(x: Tensor, eps: float = 0.0, norm_dims: int = 2) -> Tensor:
    """(x - mean) / sqrt(mean((x - mean)^2) + eps) over the last ``norm_dims`` axes (2: the
    (S, C) table, 1: each token's channels); no affine parameters."""
    dims = _dims(norm_dims)
    centered = x - x.mean(dim=dims, keepdim=True)
    return centered / torch.sqrt(centered.pow(2).mean(dim=dims, keepdim=True) + eps)


@dataclass
class BlockWeights:
    """What the energy reads of a parallel block: interaction weights W_s (h_s, S), W_c
    (h_c, C), the optional symmetry-breaking V_s (S, h_s), V_c (C, h_c); the norm's axes
    (``norm_dims``: 2 table, 1 token), its eps, and its affine gain / bias (of the norm's
    shape, (S, C) or (C,); None: affine-free)."""

    w_s: Tensor
    w_c: Tensor
    v_s: Tensor | None = None
    v_c: Tensor | None = None
    gain: Tensor | None = None
    bias: Tensor | None = None
    norm_eps: float = 0.0
    norm_dims: int = 2

    def __post_init__(self) -> None:
        if self.norm_dims not in (1, 2):
            raise ValueError(f"norm_dims must be 1 (per token) or 2 (whole table), got "
                             f"{self.norm_dims}")
        if self.norm_eps < 0:
            raise ValueError(f"norm_eps must be >= 0, got {self.norm_eps}")

    @property
    def shape(self) -> tuple[int, int]:
        """(S, C): the state's shape."""
        return self.w_s.shape[1], self.w_c.shape[1]

    @property
    def has_v(self) -> bool:
        return self.v_s is not None or self.v_c is not None

    @property
    def affine(self) -> bool:
        return self.gain is not None or self.bias is not None

    def to(self, dtype: torch.dtype) -> BlockWeights:
        cast = lambda t: None if t is None else t.detach().to(dtype)  # noqa: E731
        return replace(self, w_s=cast(self.w_s), w_c=cast(self.w_c), v_s=cast(self.v_s),
                       v_c=cast(self.v_c), gain=cast(self.gain), bias=cast(self.bias))


def block_weights(block: torch.nn.Module, affine: bool = False) -> BlockWeights:
    """The weights of a trained parallel block (see module docstring): the block hands over
    its MLPs (refusing a wiring with no energy), each MLP its (W, V). The norm's axes come
    from the block's LayerNorm ``norm``; with ``affine`` also its gain, bias and eps (the
    block the network runs), else none of them (eps 0: the theorem's block)."""
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
    detach = lambda t: None if t is None else t.detach()  # noqa: E731
    weights = BlockWeights(w_s.detach(), w_c.detach(), detach(v_s), detach(v_c))
    norm = getattr(block, "norm", None)
    if not isinstance(norm, torch.nn.LayerNorm) or len(norm.normalized_shape) not in (1, 2):
        raise ValueError(f"the energy's n is a LayerNorm over the (S, C) table or each token's "
                         f"C channels (norm=table or token), got the block norm "
                         f"{type(norm).__name__}")
    weights.norm_dims = len(norm.normalized_shape)
    if affine:
        weights = replace(weights, gain=detach(norm.weight), bias=detach(norm.bias),
                          norm_eps=float(norm.eps))
    return weights


def normalise(x: Tensor, w: BlockWeights, eps: float | None = None) -> Tensor:
    """n = g * LN_eps(x) + b (g, b: the weights' affine, when they have one) for x (..., S, C).
    ``eps`` None: the weights' own ``norm_eps``."""
    n = table_norm(x, w.norm_eps if eps is None else eps, w.norm_dims)
    if w.gain is not None:
        n = n * w.gain
    if w.bias is not None:
        n = n + w.bias
    return n


def _visible(x: Tensor, w: BlockWeights, eps: float) -> Tensor:
    """sum(x * LN_eps(x)) - L_eps(x) for x (..., S, C): 0 (and not computed) at eps = 0."""
    if eps == 0:
        return x.new_zeros(x.shape[:-2])
    dims = _dims(w.norm_dims)
    n_group = x.shape[-1] * (x.shape[-2] if w.norm_dims == 2 else 1)
    centered = x - x.mean(dim=dims, keepdim=True)
    sq = centered.pow(2).sum(dim=dims)
    lagr = math.sqrt(n_group) * torch.sqrt(sq + n_group * eps)
    value = sq / torch.sqrt(sq / n_group + eps) - lagr  # sum(x * n) = sum(centered * n)
    return value if w.norm_dims == 2 else value.sum(dim=-1)


def _evaluate(x: Tensor, w: BlockWeights, eps: float | None, need_pseudo: bool
              ) -> tuple[Tensor, Tensor | None, Tensor]:
    """(E, E_pseudo or None, dx/dt) at x (..., S, C), sharing the pre-activations."""
    eps = w.norm_eps if eps is None else eps
    n = normalise(x, w, eps)
    z_s = torch.matmul(w.w_s, n)  # (..., h_s, C)
    z_c = torch.matmul(n, w.w_c.t())  # (..., S, h_c)
    e = _visible(x, w, eps) - gelu_primitive(z_s).sum(dim=(-2, -1)) \
        - gelu_primitive(z_c).sum(dim=(-2, -1))
    a_s, a_c = F.gelu(z_s), F.gelu(z_c)
    dx = torch.matmul(w.w_s.t(), a_s) + torch.matmul(a_c, w.w_c) - x
    extra = None  # the symmetry-breaking write-back V_s a_s + a_c V_c^T
    if w.v_s is not None:
        extra = torch.matmul(w.v_s, a_s)
    if w.v_c is not None:
        sb_c = torch.matmul(a_c, w.v_c.t())
        extra = sb_c if extra is None else extra + sb_c
    pseudo = None
    if extra is not None:
        dx = dx + extra
        if need_pseudo:
            pseudo = e + 0.5 * (n * extra).sum(dim=(-2, -1))
    elif need_pseudo:
        pseudo = e
    return e, pseudo, dx


def energy(x: Tensor, w: BlockWeights, eps: float | None = None) -> Tensor:
    """E(x) (E_g(x) for weights with an affine) for x (..., S, C); returns (...). Uses only
    W_s and W_c: V has no energy. ``eps`` None: the weights' ``norm_eps``."""
    return _evaluate(x, w, eps, need_pseudo=False)[0]


def pseudo_energy(x: Tensor, w: BlockWeights, eps: float | None = None) -> Tensor:
    """The authors' pseudo-energy E(x) + 1/2 sum n * (V_s GELU(W_s n) + GELU(n W_c^T) V_c^T)
    for x (..., S, C); returns (...). Equal to ``energy`` when the weights have no V."""
    return _evaluate(x, w, eps, need_pseudo=True)[1]


def velocity(x: Tensor, w: BlockWeights, eps: float | None = None) -> Tensor:
    """dx/dt of the continuous dynamics for x (..., S, C): the block's MLP outputs at the
    normalised state, minus x; see module docstring."""
    return _evaluate(x, w, eps, need_pseudo=False)[2]


@torch.no_grad()
def block_inputs(model: torch.nn.Module, images: Tensor, index: int) -> Tensor:
    """The states (B, S, C) the network feeds its block ``index`` for ``images``
    (B, in_chans, H, W): the patch embeddings after blocks 0 .. index - 1, in eval mode,
    captured at the block's input during one forward pass (so they are exactly what the
    network computes, whatever its stem)."""
    blocks = getattr(model, "blocks", None)
    if blocks is None or not 0 <= index < len(blocks):
        valid = f"0..{len(blocks) - 1}" if blocks is not None else "none (no 'blocks')"
        raise ValueError(f"block index {index} is invalid; valid: {valid}")
    captured: list[Tensor] = []
    handle = blocks[index].register_forward_pre_hook(
        lambda _mod, args: captured.append(args[0].detach().clone()))
    was_training = model.training
    try:
        model.eval()
        model(images)
    finally:
        handle.remove()
        model.train(was_training)
    return captured[0]


@dataclass
class EnergyTrace:
    """Energy along an Euler integration from x0 (S, C) or a batch x0 (..., S, C): times (T,),
    energies (T, ...) at the recorded steps, and rises counted at every step: ``increases``
    (...) per initial state, ``n_increases`` their total. For weights with V, the same for the
    authors' pseudo-energy (``pseudo_energies``, ``pseudo_increases``); None otherwise."""

    times: Tensor
    energies: Tensor
    n_increases: int
    final_state: Tensor
    increases: Tensor | None = None
    pseudo_energies: Tensor | None = None
    pseudo_increases: Tensor | None = None

    def subset(self, index: slice) -> EnergyTrace:
        """The trace of the initial states ``index`` of a batch x0 (N, S, C)."""
        pick = lambda t: None if t is None else t[..., index]  # noqa: E731
        increases = self.increases[index]
        return EnergyTrace(self.times, self.energies[:, index], int(increases.sum()),
                           self.final_state[index], increases, pick(self.pseudo_energies),
                           None if self.pseudo_increases is None
                           else self.pseudo_increases[index])


@torch.no_grad()
def integrate(
    x0: Tensor,
    weights: BlockWeights,
    dt: float = 1e-3,
    steps: int = 20_000,
    record_every: int = 1,
    eps: float | None = None,
    tol: float = 0.0,
    dtype: torch.dtype = torch.float64,
    rtol: float = 0.0,
) -> EnergyTrace:
    """Integrate dx/dt with explicit Euler from x0 (S, C) (or a batch (..., S, C), integrated
    together) and record E along the way.

    An increase is counted whenever E(x_{t+1}) > E(x_t) + tol + rtol |E(x_t)| at any step
    (not only at the recorded ones). Computed in float64 by default so rounding does not
    masquerade as an energy increase (``rtol`` ~1e-12 sets a margin above float64 rounding
    of a sum of many terms, far below any rise worth reporting). ``eps`` None: the weights'
    ``norm_eps``.
    """
    if dt <= 0 or steps < 1 or record_every < 1 or tol < 0 or rtol < 0:
        raise ValueError("need dt > 0, steps >= 1, record_every >= 1, tol >= 0, rtol >= 0; "
                         f"got {dt}, {steps}, {record_every}, {tol}, {rtol}")
    if tuple(x0.shape[-2:]) != weights.shape:
        raise ValueError(f"x0 has shape {tuple(x0.shape)}; the block's states are (..., S, C) "
                         f"= (..., {weights.shape[0]}, {weights.shape[1]})")
    w = weights.to(dtype)
    x = x0.detach().to(dtype)
    track_pseudo = w.has_v
    e_prev, p_prev, dx = _evaluate(x, w, eps, track_pseudo)
    times, energies, pseudos = [0.0], [e_prev.clone()], [p_prev]
    increases = torch.zeros(x.shape[:-2], dtype=torch.long)
    p_increases = torch.zeros_like(increases)
    for step in range(1, steps + 1):
        x = x + dt * dx
        e, p, dx = _evaluate(x, w, eps, track_pseudo)
        increases += (e > e_prev + tol + rtol * e_prev.abs()).long()
        if track_pseudo:
            p_increases += (p > p_prev + tol + rtol * p_prev.abs()).long()
        e_prev, p_prev = e, p
        if step % record_every == 0 or step == steps:
            times.append(step * dt)
            energies.append(e)
            pseudos.append(p)
    # float64 like the integration: a rise of 0.3 on E ~ -3e4 is near float32's resolution
    return EnergyTrace(
        torch.tensor(times, dtype=dtype), torch.stack(energies), int(increases.sum()), x,
        increases,
        torch.stack(pseudos) if track_pseudo else None,
        p_increases if track_pseudo else None)
