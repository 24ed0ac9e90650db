"""The Hopfield energy of a parallel block descends along the symmetric dynamics."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from models import Mixer
from models.energy import (
    BlockWeights,
    block_inputs,
    block_weights,
    energy,
    gelu_primitive,
    integrate,
    pseudo_energy,
    table_norm,
    velocity,
)

S, C, HS, HC = 6, 5, 4, 12  # SCIENCE.md's probe sizes


@pytest.fixture(autouse=True)
def one_thread():
    """Thousands of tiny float64 steps: one thread is ~50x faster than two on a busy host."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


def tiny_mixer(name: str, depth: int = 2, seed: int = 0, **kw) -> Mixer:
    spec = {"sym": ("parallel", "symmetric"), "asym": ("parallel", "asymmetric"),
            "para": ("parallel", "vanilla")}[name]
    torch.manual_seed(seed)
    return Mixer(name=name, block=spec[0], mlp=spec[1], img_size=8, patch_size=4, dim=8,
                 depth=depth, **kw)


def digit_like_images(n: int = 3, seed: int = 0) -> torch.Tensor:
    """(n, 1, 8, 8) images with strokes on a dark background, normalised: what a patch
    embedding sees, not white noise."""
    g = torch.Generator().manual_seed(seed)
    img = torch.zeros(n, 1, 8, 8)
    for i in range(n):
        r, c = torch.randint(1, 7, (2,), generator=g).tolist()
        img[i, 0, r, 1:7] = 1.0
        img[i, 0, 1:7, c] = 1.0
    return (img - 0.3) / 0.45


def test_pseudo_energy_equals_energy_without_v_and_adds_half_the_write_back():
    w = random_weights()
    x = torch.randn(4, S, C, dtype=torch.float64)
    torch.testing.assert_close(pseudo_energy(x, w), energy(x, w))
    zero = BlockWeights(w.w_s, w.w_c, torch.zeros(S, HS, dtype=torch.float64),
                        torch.zeros(C, HC, dtype=torch.float64))
    torch.testing.assert_close(pseudo_energy(x, zero), energy(x, w))
    # with V: E + 1/2 sum n (V_s GELU(W_s n) + GELU(n W_c^T) V_c^T), the notebook's sign
    wv = random_weights(v_scale=1.0)
    n = table_norm(x)
    extra = (n * (wv.v_s @ torch.nn.functional.gelu(wv.w_s @ n))).sum(dim=(-2, -1)) \
        + (n * (torch.nn.functional.gelu(n @ wv.w_c.t()) @ wv.v_c.t())).sum(dim=(-2, -1))
    torch.testing.assert_close(pseudo_energy(x, wv), energy(x, wv) + 0.5 * extra)
    assert (extra.abs() > 1e-3).all()
    trace = integrate(x[0], wv, steps=300)
    assert trace.pseudo_energies is not None and trace.pseudo_energies.shape == (301,)
    torch.testing.assert_close(trace.pseudo_energies[0], pseudo_energy(x[0], wv))


def test_affine_free_symmetric_block_never_rises_from_real_like_states():
    """States the trained-like network feeds block 1 (digit-like images through the stem and
    block 0), batched, for the model's own symmetric block: the theorem, as for Gaussians."""
    model = tiny_mixer("sym").double()
    for p in model.parameters():  # weights of scale ~1, as SCIENCE.md's probe
        torch.nn.init.normal_(p, std=0.6)
    x0 = block_inputs(model, digit_like_images().double(), 1)
    assert x0.shape == (3, 4, 8)
    w = block_weights(model.blocks[1])
    assert not w.affine and w.norm_eps == 0
    trace = integrate(x0, w, dt=1e-2, steps=1000, record_every=10)
    assert trace.n_increases == 0 and trace.increases.tolist() == [0, 0, 0]
    assert trace.energies.shape == (101, 3)
    assert (trace.energies.diff(dim=0) <= 0).all()
    assert (trace.energies[-1] < trace.energies[0]).all()


def test_block_inputs_are_what_the_network_feeds_the_block():
    model = tiny_mixer("asym")
    images = digit_like_images()
    x = model.stem(images).flatten(2).transpose(1, 2)
    torch.testing.assert_close(block_inputs(model, images, 0), x)
    torch.testing.assert_close(block_inputs(model, images, 1), model.blocks[0](x))
    with pytest.raises(ValueError, match="block index 2 is invalid; valid: 0..1"):
        block_inputs(model, images, 2)


@pytest.mark.parametrize("norm", ["table", "token"])
def test_affine_dynamics_are_the_blocks_update_minus_x(norm):
    """With the trained affine (here a random gain and bias, eps 1e-6), dx/dt is exactly the
    block's update (its MLP outputs at LN(x) with affine) minus x, and E is the Phi terms at
    that state."""
    model = tiny_mixer("para", norm=norm).double()
    blk = model.blocks[0]
    with torch.no_grad():
        blk.norm.weight.normal_(1.0, 0.3)
        blk.norm.bias.normal_(0.0, 0.3)
    w = block_weights(blk, affine=True)
    assert w.affine and w.norm_eps == 1e-6 and w.norm_dims == (2 if norm == "table" else 1)
    x = torch.randn(2, 4, 8, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(velocity(x, w), blk.step(x) - x - x)
        n = blk.norm(x)
        phi = gelu_primitive(w.w_s @ n).sum(dim=(-2, -1)) \
            + gelu_primitive(n @ w.w_c.t()).sum(dim=(-2, -1))
    # plus the visible term sum(x * LN_eps(x)) - L_eps(x), L_eps = sum sqrt(N) sqrt(|c|^2 + N eps)
    dims = (-2, -1) if norm == "table" else (-1,)
    c = x - x.mean(dim=dims, keepdim=True)
    n_group = c[0].numel() if norm == "table" else c.shape[-1]
    lagr = (n_group * (c.pow(2).sum(dim=dims) + n_group * 1e-6)).sqrt()
    lagr = lagr if norm == "table" else lagr.sum(dim=-1)
    visible = (x * table_norm(x, 1e-6, len(dims))).sum(dim=(-2, -1)) - lagr
    assert (visible < 0).all() and (visible > -1e-3).all()
    torch.testing.assert_close(energy(x, w), visible - phi)
    # affine-free: the same block without gain, bias and eps
    free = block_weights(blk)
    torch.testing.assert_close(velocity(x, free) + x,
                               blk.token_mlp(table_norm(x, 0.0, free.norm_dims))
                               + blk.channel_mlp(table_norm(x, 0.0, free.norm_dims)))


def test_energy_gradient_with_eps_and_token_norm_gives_descent():
    """eps > 0 (with the visible term) and the per-token norm keep dE/dt = -v^T J v <= 0."""
    base = random_weights()
    x = torch.randn(5, S, C, dtype=torch.float64, requires_grad=True)
    for w in (BlockWeights(base.w_s, base.w_c, norm_eps=0.3),
              BlockWeights(base.w_s, base.w_c, norm_dims=1)):
        (grad,) = torch.autograd.grad(energy(x, w).sum(), x)
        assert ((grad * velocity(x.detach(), w)).sum(dim=(-2, -1)) <= 1e-12).all()
        trace = integrate(x.detach(), w, dt=1e-3, steps=1000, record_every=100)
        assert trace.n_increases == 0


def test_uniform_gain_keeps_descent_a_non_uniform_gain_breaks_it():
    """dE_g/dt = -f^T G J f (eps 0): a uniform gain with any bias still descends; a
    non-uniform gain (G J not symmetric) lets E rise, even for the symmetric block."""
    base = random_weights()
    g = torch.Generator().manual_seed(3)
    rnd = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64)  # noqa: E731
    x0 = rnd(8, S, C)
    uniform = BlockWeights(base.w_s, base.w_c, gain=torch.full((S, C), 1.7, dtype=torch.float64),
                           bias=rnd(S, C))
    assert integrate(x0, uniform, dt=1e-3, steps=1000).n_increases == 0
    skewed = BlockWeights(base.w_s, base.w_c, gain=torch.exp(rnd(S, C)))
    trace = integrate(x0, skewed, dt=1e-3, steps=1000)
    assert trace.n_increases > 0 and trace.pseudo_energies is None


def test_rtol_margin_and_bad_arguments():
    x0 = torch.randn(S, C, dtype=torch.float64)
    w = random_weights(v_scale=2.0)
    loose = integrate(x0, w, dt=1e-3, steps=2000, rtol=1.0)  # a rise must exceed |E|
    assert loose.n_increases == 0
    with pytest.raises(ValueError, match="x0 has shape"):
        integrate(torch.randn(C, S), w, steps=1)
    with pytest.raises(ValueError, match="rtol >= 0"):
        integrate(x0, w, steps=1, rtol=-1.0)


class StubModels:
    """Stands in for fig_energy's run-model loader: models by run id, digit-like test images."""

    def __new__(cls, models: dict[str, torch.nn.Module]):
        from analysis import fig_energy

        class Loader(fig_energy._RunModels):
            def load(self, run):
                return models.get(run["run_id"])

            def test_images(self, run):
                return digit_like_images(fig_energy.N_INITS)

        return Loader(store=None, tmp=None)


def test_census_covers_para_both_starts_and_both_norms(monkeypatch, tmp_path):
    """The census (table4b/4c) and figure 4 over trained-like sym, asym and para models: one
    row per (run, block, start kind, norm kind); the affine-free SymMixer never rises; the
    ParaMixer negative control does; the figure renders."""
    import matplotlib.pyplot as plt

    from analysis import fig_energy
    from analysis.load_runs import RunTables

    monkeypatch.setattr(fig_energy, "STEPS", 100)
    monkeypatch.setattr(fig_energy, "N_INITS", 2)
    models, rows = {}, []
    for i, name in enumerate(["sym", "asym", "para"]):
        model = tiny_mixer(name, seed=i)
        with torch.no_grad():
            for blk in model.blocks:  # interaction weights of scale ~1 and a trained-like gain
                for p in (*blk.token_mlp.parameters(), *blk.channel_mlp.parameters()):
                    p.normal_(0.0, 0.6)
                blk.norm.weight.normal_(1.0, 0.3)
        models[f"id{i}"] = model
        rows.append({"run_id": f"id{i}", "run_name": f"{name}-s0", "model": name,
                     "sb_lambda": 0.0 if name == "asym" else float("nan"), "seed": 0,
                     "status": "FINISHED"})
    tables = RunTables(runs=pd.DataFrame(rows), epochs=pd.DataFrame())
    loader = StubModels(models)
    census = fig_energy.energy_census(tables, loader)
    assert list(dict.fromkeys(census["kind"])) == ["sym", "asym", "para"]
    assert len(census) == 3 * 2 * 2 * 2
    assert set(zip(census["start"], census["norm"], strict=True)) == {
        (s, n) for s in fig_energy.STARTS for n in fig_energy.NORMS}
    assert (census["steps"] == 2 * 100).all()
    free_sym = census[(census["kind"] == "sym") & (census["norm"] == "affine-free")]
    assert (free_sym["steps_energy_rose"] == 0).all()
    assert (free_sym["steps_pseudo_energy_rose"] == 0).all()
    para = census[census["kind"] == "para"]
    assert para["steps_energy_rose"].sum() > 0 and para["largest_rise"].max() > 0
    summary = fig_energy.census_summary(census)
    assert len(summary) == 3 * 4 and (summary["blocks"] == 2).all()
    assert summary["steps_energy_rose"].sum() == census["steps_energy_rose"].sum()

    # the figure's code runs in full; rasterising it (seconds) is left to tests/test_analysis.py
    saved = []
    monkeypatch.setattr(fig_energy, "save_figure",
                        lambda fig, out, name: saved.append(fig.axes) or plt.close(fig) or [])
    drawn = fig_energy.draw(tables, tmp_path, loader)  # the traces come from the census' cache
    [axes] = saved
    assert len(axes) == 2 * 3 and axes[3].get_yscale() == "symlog"
    table = drawn.tables["table4_energy"]
    assert set(table["model"]) == {"SymMixer", "AsymMixer λ=0", "ParaMixer"}
    assert len(table) == 3 * 4 * 2  # per model: 4 settings x 2 initial states
    sym_free = table[(table["model"] == "SymMixer") & (table["norm"] == "affine-free")]
    assert (sym_free["steps_energy_rose"] == 0).all()
    assert {"table4b_energy_every_block", "table4c_energy_census"} <= set(drawn.tables)


def test_a_block_norm_without_statistics_has_no_energy():
    model = tiny_mixer("sym", norm="affine")  # ResMLP's Affine: no LayerNorm to derive from
    with pytest.raises(ValueError, match="norm=table or token.*got the block norm Affine"):
        block_weights(model.blocks[0])
