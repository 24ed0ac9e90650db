"""The energy-based MetaFormer block (Karakida, Ota, Taki, arXiv:2406.12220, the section on the
hierarchical associative memory; the authors' demo/demo_energymetaformer.ipynb): a
three-layer hierarchical Hopfield network whose forward pass is descent on an explicit energy.

Layers and their states (B omitted): the visible layer x (S, C), a token hidden layer
h_s (h_s, C) and a channel hidden layer h_c (S, h_c). Each layer has a convex Lagrangian whose
gradient is its activation:

    visible  L_v(x) = gamma sum_groups N sqrt(var_g(x) + eps) + <delta, x>
             g_v = dL_v/dx = gamma (x - mean_g) / sqrt(var_g + eps) + delta   (a layer norm)
             groups: the whole (S, C) table (``norm="table"``, N = S C) or each token
             (``norm="token"``, N = C); gain gamma = exp(log_gain) > 0 a scalar (a gain per
             element would not be the gradient of any Lagrangian), bias delta of the norm's shape
    hidden   L(h) = 1/2 sum relu(h)^2,   g = relu(h)      (for h_s and h_c)

Interactions: token weights W_s (h_s, S), channel weights W_c (h_c, C), read and written back
with the same matrix (symmetric, as the derivation gives). The energy:

    E = [<g_v, x> - L_v(x)] + [<g_s, h_s> - L(h_s)] + [<g_c, h_c> - L(h_c)]
        - <g_s, W_s g_v> - <g_c, g_v W_c^T>

where the visible term is -gamma eps sum_groups N / sqrt(var_g + eps) (0 at eps = 0: L_v is
then homogeneous of degree 1) and each hidden term is 1/2 ||relu(h)||^2.

Dynamics (each layer descends along the gradient of E with respect to its activation, as in
HAMUX, which the notebook uses):

    dE/dg_v = x   - W_s^T g_s - g_c W_c
    dE/dg_s = h_s - W_s g_v
    dE/dg_c = h_c - g_v W_c^T
    state  <-  state - eta dE/dg   for all three layers at once (``energy_step`` eta)

Descent: dE/d(state) = H dE/dg with H the Hessian of the layer's Lagrangian, symmetric
positive semi-definite (each Lagrangian is convex), so the continuous flow gives
dE/dt = -sum_layers (dE/dg)^T H (dE/dg) <= 0, and a small enough step eta lowers E at every
step (tests/test_zoo_hopfield.py checks it in float64).

The block in the network. Its input is the visible state x_0; the hidden layers start at
their equilibrium for it, h_s = W_s g_v(x_0), h_c = g_v(x_0) W_c^T (the fast-hidden limit in
which the derivation integrates them out; the notebook starts them at 0, which would give
the weights no gradient after one step). Then ``n_iter`` descent steps; the block returns
x_0 + DropPath(x_n - x_0). One step is

    x_1 = (1 - eta) x_0 + eta (W_s^T relu(W_s g_v) + relu(g_v W_c^T) W_c),

the SymMixer's parallel block with ReLU, a decay and a step size: the parallelized Mixer is
the one-step, fast-hidden form of this block. Its two interaction matrices are held as
symmetric MLPs (``blk.token_mlp.w``, ``blk.channel_mlp.w``, models/mlp.py), so the model's MLP
kind must be ``symmetric``; only the ``mlp`` token mixer and no LayerScale are defined.

Differences from the notebook, which trains one such network (visible = the 784 pixels, two
hidden layers of 900 ReLUs) to denoise MNIST: here the block is a layer of the zoo's
classifier (patch stem, ``depth`` blocks, head) trained on labels, and its hidden layers are
the token and channel layers of the (S, C) table. With ``patch_size=1`` and few channels the
token weights W_s are read over the S = H W pixels, as the notebook's receptive fields
(conf/experiment/energy_metaformer.yaml). ReLU, not GELU, in the hidden layers: the
primitive of GELU is not convex, so with it the descent would not be guaranteed.

``energy_descent`` is False: the block descends this energy, not the one of models/energy.py
(GELU hidden units integrated out), which the fig4 tools read.
"""

from __future__ import annotations

import numbers
from typing import ClassVar, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from models.block import _MixingBlock
from models.mlp import mix

ENERGY_NORMS = ("table", "token")
EPS = 1e-6  # as the other blocks' LayerNorms


class HopfieldState(NamedTuple):
    """States of the three layers: x (B, S, C), h_s (B, h_s, C), h_c (B, S, h_c)."""

    x: Tensor
    h_s: Tensor
    h_c: Tensor


class EnergyBlock(_MixingBlock):
    """Energy-based MetaFormer block: ``n_iter`` steps of descent on the three-layer Hopfield
    energy (module docstring), step size ``energy_step`` (0 < eta <= 1)."""

    energy_descent: ClassVar[bool] = False  # not the energy of models/energy.py
    mlp_kinds: ClassVar[tuple[str, ...] | None] = ("symmetric",)

    def __init__(self, *, dim: int, seq_len: int, norm: str = "table",
                 token_mixer: str = "mlp", layer_scale: float = 0.0, energy_step: float = 0.5,
                 **kw: object) -> None:
        errors = self.energy_arg_errors(norm=norm, token_mixer=token_mixer,
                                        layer_scale=layer_scale, energy_step=energy_step)
        if errors:
            raise ValueError("; ".join(errors))
        super().__init__(dim=dim, seq_len=seq_len, norm=norm, token_mixer=token_mixer,
                         layer_scale=layer_scale, **kw)
        self.energy_step = float(energy_step)
        self.norm_dims = (-2, -1) if norm == "table" else (-1,)
        self.log_gain = nn.Parameter(torch.zeros(()))  # gamma = exp(log_gain) > 0
        self.bias = nn.Parameter(torch.zeros((seq_len, dim) if norm == "table" else (dim,)))

    @classmethod
    def energy_arg_errors(cls, *, norm: object = "table", token_mixer: object = "mlp",
                          layer_scale: object = 0.0, energy_step: object = 0.5,
                          **_: object) -> list[str]:
        """The knobs the energy block refuses, each naming the value and what is valid."""
        errors = []
        if norm not in ENERGY_NORMS:
            errors.append(f"model.norm={norm!r} is not defined for the energy block (its norm "
                          f"must be the gradient of a Lagrangian); valid: {list(ENERGY_NORMS)}")
        if token_mixer != "mlp":
            errors.append(f"model.token_mixer={token_mixer!r} is not defined for the energy "
                          "block (its token layer is the Hopfield interaction W_s); valid: 'mlp'")
        if layer_scale:
            errors.append(f"model.layer_scale={layer_scale!r} is not defined for the energy "
                          "block (a per-channel scale breaks the energy); valid: 0")
        if isinstance(energy_step, bool) or not isinstance(energy_step, numbers.Real) \
                or not 0.0 < energy_step <= 1.0:
            errors.append(f"model.energy_step={energy_step!r} is invalid; it must be in (0, 1]")
        return errors

    @classmethod
    def arg_errors(cls, *, mlp: object, **kw: object) -> list[str]:
        return super().arg_errors(mlp=mlp, **kw) + cls.energy_arg_errors(**kw)

    def init_weights(self) -> None:
        super().init_weights()
        nn.init.zeros_(self.log_gain)
        nn.init.zeros_(self.bias)

    # -- the energy and its gradients ---------------------------------------------------
    def weights(self) -> tuple[Tensor, Tensor]:
        """(W_s (h_s, S), W_c (h_c, C))."""
        return self.token_mlp.w, self.channel_mlp.w

    def _stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(x - mean, sqrt(var + eps)) over the norm's groups."""
        centered = x - x.mean(dim=self.norm_dims, keepdim=True)
        sd = torch.sqrt(centered.pow(2).mean(dim=self.norm_dims, keepdim=True) + EPS)
        return centered, sd

    def visible_activation(self, x: Tensor) -> Tensor:
        """g_v = gamma (x - mean) / sqrt(var + eps) + delta: the gradient of L_v."""
        centered, sd = self._stats(x)
        return self.log_gain.exp() * centered / sd + self.bias

    def initial_state(self, x: Tensor) -> HopfieldState:
        """x with the hidden layers at their equilibrium for it."""
        w_s, w_c = self.weights()
        g_v = self.visible_activation(x)
        return HopfieldState(x, mix(g_v, w_s, None, -2), mix(g_v, w_c, None, -1))

    def energy(self, state: HopfieldState) -> Tensor:
        """E of each sample, (B,) (module docstring)."""
        x, h_s, h_c = state
        w_s, w_c = self.weights()
        _, sd = self._stats(x)
        group = x[0].numel() if len(self.norm_dims) == 2 else x.shape[-1]
        visible = -self.log_gain.exp() * EPS * group * (1.0 / sd).flatten(1).sum(1)
        g_v, g_s, g_c = self.visible_activation(x), F.relu(h_s), F.relu(h_c)
        hidden = 0.5 * (g_s.pow(2).flatten(1).sum(1) + g_c.pow(2).flatten(1).sum(1))
        coupling = (g_s * mix(g_v, w_s, None, -2)).flatten(1).sum(1) \
            + (g_c * mix(g_v, w_c, None, -1)).flatten(1).sum(1)
        return visible + hidden - coupling

    def activation_gradients(self, state: HopfieldState) -> HopfieldState:
        """(dE/dg_v, dE/dg_s, dE/dg_c) in closed form: the descent directions."""
        x, h_s, h_c = state
        w_s, w_c = self.weights()
        g_v, g_s, g_c = self.visible_activation(x), F.relu(h_s), F.relu(h_c)
        d_x = x - mix(g_s, w_s.t(), None, -2) - mix(g_c, w_c.t(), None, -1)
        return HopfieldState(d_x, h_s - mix(g_v, w_s, None, -2), h_c - mix(g_v, w_c, None, -1))

    def descent_step(self, state: HopfieldState, step: float | None = None) -> HopfieldState:
        """Every layer at once: state - eta dE/dg (eta: ``step`` or the block's energy_step)."""
        eta = self.energy_step if step is None else step
        grads = self.activation_gradients(state)
        return HopfieldState(*(s - eta * g for s, g in zip(state, grads, strict=True)))

    def relax(self, state: HopfieldState, steps: int, step: float | None = None
              ) -> tuple[HopfieldState, Tensor]:
        """``steps`` descent steps from ``state``; returns (final state, energies (steps + 1,
        B) before each step and after the last)."""
        energies = [self.energy(state)]
        for _ in range(steps):
            state = self.descent_step(state, step)
            energies.append(self.energy(state))
        return state, torch.stack(energies)

    def forward(self, x: Tensor) -> Tensor:  # (B, S, C) -> (B, S, C)
        state = self.initial_state(x)
        for _ in range(self.n_iter):
            state = self.descent_step(state)
        return x + self.drop_path(state.x - x)
