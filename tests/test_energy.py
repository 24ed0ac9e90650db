"""The Hopfield energy of a parallel block descends along the symmetric dynamics."""

from __future__ import annotations

import pytest
import torch

from models import Mixer
from models.energy import (
    BlockWeights,
    block_weights,
    energy,
    gelu_primitive,
    integrate,
    table_norm,
    velocity,
)

S, C, HS, HC = 6, 5, 4, 12  # SCIENCE.md's probe sizes


def random_weights(v_scale: float = 0.0, seed: int = 0) -> BlockWeights:
    g = torch.Generator().manual_seed(seed)
    rnd = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64)  # noqa: E731
    w = BlockWeights(rnd(HS, S), rnd(HC, C))
    if v_scale:
        w.v_s, w.v_c = v_scale * rnd(S, HS), v_scale * rnd(C, HC)
    return w


def test_gelu_primitive_differentiates_to_gelu():
    z = torch.linspace(-6, 6, 101, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(gelu_primitive(z).sum(), z)
    torch.testing.assert_close(grad, torch.nn.functional.gelu(z.detach()))
    assert gelu_primitive(torch.zeros(1, dtype=torch.float64)).item() == 0.0


def test_energy_gradient_matches_autograd_and_velocity():
    w = random_weights()
    x = torch.randn(3, S, C, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(energy(x, w).sum(), x)
    x = x.detach()
    n = table_norm(x)
    r = (x - x.mean(dim=(-2, -1), keepdim=True)).pow(2).mean(dim=(-2, -1), keepdim=True).sqrt()
    f = velocity(x, w) + x  # the block update f(n) = W_s^T GELU(W_s n) + GELU(n W_c^T) W_c
    # dE/dx = J^T dE/dn with dE/dn = -f and J the Jacobian of the table norm
    analytic = -((f - f.mean(dim=(-2, -1), keepdim=True))
                 - n * (n * f).mean(dim=(-2, -1), keepdim=True)) / r
    torch.testing.assert_close(grad, analytic)
    # and so dE/dt = grad . dx/dt <= 0 for the symmetric dynamics
    assert ((grad * velocity(x, w)).sum(dim=(-2, -1)) <= 1e-12).all()


def test_symmetric_dynamics_never_increase_energy():
    x0 = torch.randn(S, C, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    trace = integrate(x0, random_weights(), dt=1e-3, steps=5000, record_every=100)
    assert trace.n_increases == 0
    assert (trace.energies.diff() <= 0).all()
    assert trace.energies[-1] < trace.energies[0]
    assert len(trace.times) == len(trace.energies) == 51


def test_symmetry_breaking_lets_energy_rise():
    x0 = torch.randn(S, C, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    trace = integrate(x0, random_weights(v_scale=2.0), dt=1e-3, steps=5000, record_every=100)
    assert trace.n_increases > 0


@pytest.mark.parametrize("name, has_v", [("sym", False), ("asym", True), ("para", True)])
def test_block_weights_of_a_model(name, has_v):
    spec = {"sym": ("parallel", "symmetric"), "asym": ("parallel", "asymmetric"),
            "para": ("parallel", "vanilla")}[name]
    model = Mixer(block=spec[0], mlp=spec[1], img_size=8, patch_size=4, dim=8, depth=1).double()
    w = block_weights(model.blocks[0])
    assert w.w_s.shape == (4, 4) and w.w_c.shape == (32, 8)
    assert (w.v_s is not None) == has_v
    # the energy's update equals the block's MLP output on the affine-free normalised state
    blk = model.blocks[0]
    x = torch.randn(2, 4, 8, dtype=torch.float64)
    n = table_norm(x)
    torch.testing.assert_close(velocity(x, w) + x, blk.token_mlp(n) + blk.channel_mlp(n))
    trace = integrate(x[0], w, steps=200, record_every=50)
    assert torch.isfinite(trace.energies).all()


def test_serial_block_has_no_energy():
    model = Mixer(block="serial", mlp="vanilla", img_size=8, patch_size=4, dim=8, depth=1)
    with pytest.raises(ValueError, match="parallel blocks only"):
        block_weights(model.blocks[0])
