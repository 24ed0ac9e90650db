"""iMixer's implicit token mixer and the energy-based MetaFormer block: the fixed point is
the inverse of (I - F), F is a contraction, the energy block descends its energy."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models.block import BLOCKS
from models.energy_metaformer import EnergyBlock, HopfieldState
from models.implicit_mixer import GELU_LIPSCHITZ, ImplicitTokenMixer
from models.mlp import mix
from models.token_mixer import TOKEN_MIXERS

S, C, H = 6, 3, 5  # tokens, channels, token hidden


def implicit(contraction: float = 0.8, bias: bool = True, seed: int = 0) -> ImplicitTokenMixer:
    torch.manual_seed(seed)
    return ImplicitTokenMixer(dim=C, seq_len=S, hidden=H, mlp="vanilla", bias=bias,
                              contraction=contraction).double()


def newton_fixed_point(f, u: torch.Tensor, steps: int = 30) -> torch.Tensor:
    """The root of G(y) = y - u - f(y) by Newton's method on the flattened problem."""
    y = u.clone()
    for _ in range(steps):
        g = (y - u - f(y)).flatten()
        jac = torch.autograd.functional.jacobian(lambda z: z - u - f(z), y).reshape(g.numel(), -1)
        y = y - torch.linalg.solve(jac, g).reshape(y.shape)
    return y


def test_implicit_is_registered():
    assert TOKEN_MIXERS["implicit"] is ImplicitTokenMixer
    assert GELU_LIPSCHITZ == pytest.approx(1.1289, abs=1e-4)
    z = torch.linspace(-6, 6, 20001, dtype=torch.double, requires_grad=True)
    (slope,) = torch.autograd.grad(F.gelu(z).sum(), z)
    assert slope.abs().max().item() == pytest.approx(GELU_LIPSCHITZ, abs=1e-6)


def test_fixed_point_iteration_converges_geometrically():
    mixer = implicit(contraction=0.8)
    u = 3 * torch.randn(2, H, C, dtype=torch.double)
    residuals: list[float] = []
    mixer.eval().solve(u, iters=40, residuals=residuals)
    above_rounding = [r for r in residuals if r > 1e-11 * residuals[0]]
    assert len(above_rounding) >= 5
    ratios = [b / a for a, b in zip(above_rounding, above_rounding[1:], strict=False)]
    assert max(ratios) <= 0.8 + 1e-9  # never slower than the contraction bound
    assert residuals[-1] < 1e-11 * residuals[0]


def test_iteration_equals_direct_solve():
    mixer = implicit(contraction=0.9).eval()
    x = 2 * torch.randn(2, S, C, dtype=torch.double)
    u = mix(x, mixer.w_in, mixer.b_in, -2)
    with torch.no_grad():
        f = mixer.inner_map()
        y_star = newton_fixed_point(f, u)
        torch.testing.assert_close(y_star, u + f(y_star), rtol=0, atol=1e-12)  # a root
        y_iter = mixer.solve(u, iters=300)
    torch.testing.assert_close(y_iter, y_star, rtol=1e-6, atol=1e-6)
    # the module's output is the write-back of the exact inverse once iterated enough
    mixer.implicit_iters = 300
    direct = mix(F.gelu(y_star), mixer.w_out, mixer.b_out, -2)
    torch.testing.assert_close(mixer(x).detach(), direct, rtol=1e-6, atol=1e-6)


def test_inner_map_is_a_contraction_even_for_large_weights():
    mixer = implicit(contraction=0.7)
    with torch.no_grad():
        for lin in (mixer.inner1, mixer.inner2):
            lin.weight.mul_(25.0)  # far beyond the bound: the normalisation must catch it
    mixer.train()(torch.randn(4, S, C, dtype=torch.double))  # refines the power iteration
    mixer.eval()
    bound = 0.7 ** 0.5 / GELU_LIPSCHITZ
    for lin in (mixer.inner1, mixer.inner2):
        sigma = torch.linalg.matrix_norm(lin.effective_weight().detach(), ord=2).item()
        assert sigma <= bound * (1 + 1e-6)
    # measured Lipschitz constant of F: the Jacobian's spectral norm at random points, and
    # difference quotients of random pairs (F acts on each (sample, channel) column alone)
    f = mixer.inner_map()
    lips = []
    for seed in range(5):
        y = 3 * torch.randn(H, 1, dtype=torch.double, generator=torch.Generator().manual_seed(seed))
        jac = torch.autograd.functional.jacobian(f, y).reshape(H, H)
        lips.append(torch.linalg.matrix_norm(jac, ord=2).item())
        a, b = torch.randn(2, 7, H, C, dtype=torch.double)
        lips.append(((f(a) - f(b)).norm() / (a - b).norm()).item())
    assert max(lips) < 0.7 < 1.0


def test_implicit_gradients_reach_every_parameter():
    mixer = implicit(bias=True).train()
    x = torch.randn(3, S, C, dtype=torch.double)
    (mixer(x) * torch.randn(3, S, C, dtype=torch.double)).sum().backward()
    for name, p in mixer.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"
    assert sorted(mixer.symmetry()) == ["cos", "symfrac"]
    assert mixer.regularizer().item() == 0.0


@pytest.mark.parametrize("knob, value", [("contraction", 1.0), ("contraction", 0.0),
                                         ("implicit_iters", 0), ("power_iters", 1.5)])
def test_implicit_refuses_bad_knobs(knob, value):
    with pytest.raises(ValueError, match=f"model.{knob}="):
        ImplicitTokenMixer(dim=C, seq_len=S, hidden=H, mlp="vanilla", bias=False,
                           **{knob: value})


# -- the energy-based MetaFormer block ---------------------------------------------------------
HS, HC = 4, 7


def energy_block(norm: str = "table", n_iter: int = 3, seed: int = 0, **kw) -> EnergyBlock:
    torch.manual_seed(seed)
    blk = EnergyBlock(dim=C, seq_len=S, token_hidden=HS, channel_hidden=HC, mlp="symmetric",
                      norm=norm, n_iter=n_iter, **kw).double()
    with torch.no_grad():  # a trained-looking affine: gain != 1, bias != 0
        blk.log_gain.fill_(0.3)
        blk.bias.normal_(std=0.5)
    return blk


def random_state(seed: int, scale: float = 10.0) -> HopfieldState:
    g = torch.Generator().manual_seed(seed)
    rnd = lambda *shape: scale * torch.randn(*shape, generator=g, dtype=torch.double)  # noqa: E731
    return HopfieldState(rnd(2, S, C), rnd(2, HS, C), rnd(2, S, HC))


def test_energy_is_registered():
    assert BLOCKS["energy"] is EnergyBlock
    assert not EnergyBlock.energy_descent  # not the energy of models/energy.py


@pytest.mark.parametrize("norm", ["table", "token"])
def test_closed_form_descent_directions_match_autograd(norm):
    blk = energy_block(norm)
    state = HopfieldState(*(t.requires_grad_() for t in random_state(1, scale=2.0)))
    grads = torch.autograd.grad(blk.energy(state).sum(), state)
    d = blk.activation_gradients(HopfieldState(*(t.detach() for t in state)))
    x = state.x.detach()
    # dE/dx = H_v dE/dg_v, with H_v the (symmetric) Jacobian of g_v: a Jacobian-vector product
    _, h_dv = torch.autograd.functional.jvp(blk.visible_activation, x, d.x)
    torch.testing.assert_close(grads[0], h_dv)
    for grad, h, dh in zip(grads[1:], state[1:], d[1:], strict=True):  # H = diag(h > 0)
        torch.testing.assert_close(grad, (h.detach() > 0).double() * dh)


@pytest.mark.parametrize("norm", ["table", "token"])
def test_descent_lowers_the_energy_at_every_step(norm):
    blk = energy_block(norm)
    with torch.no_grad():
        for seed in range(3):
            _, energies = blk.relax(random_state(seed), steps=300, step=1e-2)  # (301, B)
            steps = energies.diff(dim=0)
            assert (steps <= 1e-12 * energies[:-1].abs()).all(), f"seed {seed}: E rose"
            assert (energies[-1] < energies[0] - 1.0).all()  # and it really descends
            assert torch.isfinite(energies).all()


def test_one_step_from_equilibrium_is_a_symmetric_parallel_block():
    blk = energy_block(n_iter=1, energy_step=0.3).eval()
    x = torch.randn(2, S, C, dtype=torch.double)
    w_s, w_c = blk.weights()
    n = blk.visible_activation(x)
    f = w_s.t() @ F.relu(w_s @ n) + F.relu(n @ w_c.t()) @ w_c
    torch.testing.assert_close(blk(x), 0.7 * x + 0.3 * f)


def test_energy_block_gradients_flow_without_nan():
    blk = energy_block(n_iter=4, drop_path=0.1).train()
    x = torch.randn(3, S, C, dtype=torch.double)
    out = blk(x)
    assert torch.isfinite(out).all()
    (out * torch.randn_like(out)).sum().backward()
    names = {n for n, _ in blk.named_parameters()}
    assert names == {"log_gain", "bias", "token_mlp.w", "channel_mlp.w"}
    for name, p in blk.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


@pytest.mark.parametrize("kw, key", [({"mlp": "vanilla"}, "model.mlp"),
                                     ({"norm": "affine"}, "model.norm"),
                                     ({"token_mixer": "linear"}, "model.token_mixer"),
                                     ({"energy_step": 1.5}, "model.energy_step"),
                                     ({"layer_scale": 0.1}, "model.layer_scale")])
def test_energy_block_refuses_what_breaks_the_energy(kw, key):
    args = {"dim": C, "seq_len": S, "token_hidden": HS, "channel_hidden": HC,
            "mlp": "symmetric", **kw}
    with pytest.raises(ValueError, match=key):
        EnergyBlock(**args)


def test_figure_helpers_read_a_block():
    from analysis.fig_energy_metaformer import energy_descent, receptive_fields

    torch.manual_seed(0)
    blk = EnergyBlock(dim=C, seq_len=16, token_hidden=HS, channel_hidden=HC, mlp="symmetric",
                      energy_step=0.05)
    fields, side = receptive_fields(blk, n=3)
    assert side == 4 and fields.shape == (3, 4, 4)
    norms = blk.token_mlp.w.detach().double().norm(dim=1)
    assert torch.allclose(torch.from_numpy(fields[0]).flatten(),
                          blk.token_mlp.w.detach().double()[norms.argmax()] / norms.max())
    energies = energy_descent(blk, steps=20, n_inits=2)
    assert energies.shape == (21, 2)
    assert (energies[1:] <= energies[:-1]).all()  # a small step descends
