"""The model zoo: every model of the variant table (models/variants.py) builds from its Hydra
config and behaves."""

from __future__ import annotations

import copy
from pathlib import Path

import hydra
import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from models import (
    VARIANTS,
    AsymmetricMlp,
    Mixer,
    SymmetricMlp,
    VanillaMlp,
    cosine_symmetry,
    num_params,
    symmetric_fraction,
)

CONF = Path(__file__).resolve().parents[1] / "conf"
REGISTRY = list(VARIANTS)  # the table; tests/test_variants.py checks conf/model/ matches it

# Parameter counts, 10 classes, no MLP biases (SCIENCE.md; an independent re-implementation
# of the authors' layers gives the same numbers). cpu: 28 px, 1 channel, patch 4, C 128, depth 4.
PINNED = {
    "vanilla": {"cpu": 653_450, "s16": 21_191_178},
    "para": {"cpu": 603_274, "s16": 19_585_546},
    "sym": {"cpu": 328_586, "s16": 10_795_530},
    "asym": {"cpu": 603_274, "s16": 19_585_546},
}


def build(name: str, *overrides: str) -> Mixer:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"model={name}", "data=digits", *overrides])
    return hydra.utils.instantiate(cfg.model)


def test_every_registered_model_is_pinned():
    assert REGISTRY, "the variant table holds no models"
    assert set(REGISTRY) == set(PINNED), "a model in the variant table has no pinned count"


@pytest.mark.parametrize("name", REGISTRY)
def test_parameter_counts(name):
    cpu = build(name, "data.image_size=28")
    s16 = build(name, "size=s16", "data.channels=3")
    assert num_params(cpu) == PINNED[name]["cpu"]
    assert num_params(s16) == PINNED[name]["s16"]


def test_vanilla_biases_match_reference_count():
    assert num_params(build("vanilla", "data.image_size=28", "model.mlp_bias=true")) == 656_462


def test_para_and_vanilla_differ_only_in_wiring():
    # same MLPs; the serial block has one more LayerNorm((S, C)) per block
    v, p = build("vanilla"), build("para")
    extra_norms = len(v.blocks) * 2 * v.seq_len * v.stem.out_channels
    assert num_params(v) - num_params(p) == extra_norms
    v2, p2 = build("vanilla", "model.norm=token"), build("para", "model.norm=token")
    assert num_params(v2) - num_params(p2) == len(v2.blocks) * 2 * v2.stem.out_channels


@pytest.mark.parametrize("n_iter", [1, 2])
@pytest.mark.parametrize("name", REGISTRY)
def test_forward_backward_every_parameter_learns(name, n_iter):
    torch.manual_seed(0)
    model = build(name, f"model.n_iter={n_iter}", "model.dim=16", "model.depth=2",
                  "model.drop_path=0.1", "model.sb_lambda=0.1")
    # the zero-initialised head would block every gradient below it; give it weights
    torch.nn.init.normal_(model.head.weight, std=0.1)
    x = torch.randn(3, 1, 8, 8)
    logits = model(x)
    assert logits.shape == (3, 10)
    loss = F.cross_entropy(logits, torch.tensor([0, 1, 2])) + model.regularizer()
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{pname} has an all-zero gradient"


@pytest.mark.parametrize("name", REGISTRY)
def test_batch_samples_are_independent(name):
    torch.manual_seed(0)
    model = build(name, "model.dim=16", "model.depth=2").eval()
    torch.nn.init.normal_(model.head.weight)
    x = torch.randn(4, 1, 8, 8)
    y = model(x)
    x2 = x.clone()
    x2[1] = torch.randn(1, 8, 8)
    y2 = model(x2)
    assert not torch.allclose(y[1], y2[1])
    torch.testing.assert_close(y[[0, 2, 3]], y2[[0, 2, 3]], rtol=0, atol=0)


def test_symmetric_mlp_gradient_has_read_and_write_paths():
    torch.manual_seed(0)
    for mix_dim in (-1, -2):
        mlp = SymmetricMlp(dim=6, hidden=5, mix_dim=mix_dim).double()
        x = torch.randn(2, 6, 6, dtype=torch.double)
        mlp(x).pow(2).sum().backward()
        # explicit reference: independent copies for the read W and the write W^T
        read = mlp.w.detach().clone().requires_grad_()
        write_t = mlp.w.detach().clone().requires_grad_()
        if mix_dim == -1:
            out = F.gelu(x @ read.t()) @ write_t
        else:
            out = write_t.t() @ F.gelu(read @ x)
        out.pow(2).sum().backward()
        torch.testing.assert_close(mlp.w.grad, read.grad + write_t.grad)
        assert read.grad.abs().sum() > 0 and write_t.grad.abs().sum() > 0


def test_asym_with_zero_v_equals_sym():
    torch.manual_seed(0)
    sym = build("sym", "model.dim=16", "model.depth=2").eval()
    asym = build("asym", "model.dim=16", "model.depth=2").eval()
    state = {k: v for k, v in asym.state_dict().items()}
    for k, v in sym.state_dict().items():
        state[k] = v
    for k in state:
        if k.endswith(".v"):
            state[k] = torch.zeros_like(state[k])
    asym.load_state_dict(state)
    torch.nn.init.normal_(sym.head.weight)
    asym.head.weight.data.copy_(sym.head.weight)
    x = torch.randn(5, 1, 8, 8)
    torch.testing.assert_close(asym(x), sym(x), rtol=0, atol=0)
    assert asym.regularizer().item() == 0.0


def test_tied_weights_stay_tied_after_an_optimiser_step():
    torch.manual_seed(0)
    model = build("sym", "model.dim=16", "model.depth=2")
    torch.nn.init.normal_(model.head.weight, std=0.1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x = torch.randn(4, 1, 8, 8)
    before = [blk.channel_mlp.w.detach().clone() for blk in model.blocks]
    F.cross_entropy(model(x), torch.tensor([0, 1, 2, 3])).backward()
    opt.step()
    for blk, w0 in zip(model.blocks, before, strict=True):
        mlp = blk.channel_mlp
        assert not torch.equal(mlp.w, w0)  # it did learn
        # the write path is still the transpose of the (updated) read path
        n = torch.randn(3, 16)
        torch.testing.assert_close(mlp(n), F.gelu(n @ mlp.w.t()) @ mlp.w)
    assert model.symmetry_measures() == {}  # nothing to measure: tied by construction


def test_regularizer_is_lambda_times_sum_of_v_norms():
    model = build("asym", "model.dim=16", "model.depth=2", "model.sb_lambda=0.25")
    vs = [p for n, p in model.named_parameters() if n.endswith(".v")]
    assert len(vs) == 4  # token and channel V in each of 2 blocks
    expected = 0.25 * sum(v.pow(2).sum() for v in vs)
    torch.testing.assert_close(model.regularizer(), expected)
    for other in ("vanilla", "para", "sym"):
        assert build(other, "model.dim=16").regularizer().item() == 0.0


def test_symmetry_measures_exact_on_tied_and_antitied():
    torch.manual_seed(0)
    w1 = torch.randn(64, 32)
    assert cosine_symmetry(w1, w1.t()) == pytest.approx(1.0, abs=1e-12)
    assert cosine_symmetry(w1, -w1.t()) == pytest.approx(-1.0, abs=1e-12)
    assert symmetric_fraction(w1, w1.t()) == 1.0
    assert symmetric_fraction(w1, -w1.t()) == 0.0
    assert symmetric_fraction(w1, 2 * w1.t()) == pytest.approx(0.9)


def test_symmetry_measures_near_zero_for_independent_matrices():
    torch.manual_seed(0)
    w1, w2 = torch.randn(512, 128), torch.randn(128, 512)
    # the cosine of independent Gaussian matrices has std 1/sqrt(d h) = 0.0039 here
    assert abs(cosine_symmetry(w1, w2)) < 0.02
    assert symmetric_fraction(w1, w2) == pytest.approx(0.5, abs=0.01)


def test_symmetry_measure_dict_per_block_and_module():
    vanilla = build("vanilla", "model.depth=3")
    m = vanilla.symmetry_measures()
    for i in range(3):
        for part in ("token", "channel"):
            assert -1 <= m[f"symmetry/b{i}/{part}/cos"] <= 1
            assert 0 <= m[f"symmetry/b{i}/{part}/symfrac"] <= 1
    assert "symmetry/mean/token/cos" in m
    # tie the vanilla weights by hand: every measure becomes exactly 1
    for blk in vanilla.blocks:
        for mlp in (blk.token_mlp, blk.channel_mlp):
            mlp.w2.data.copy_(mlp.w1.data.t())
    m = vanilla.symmetry_measures()
    assert all(v == pytest.approx(1.0, abs=1e-12) for v in m.values())
    asym = build("asym", "model.depth=2").symmetry_measures()
    assert {"symmetry/b1/channel/v_ratio", "symmetry/mean/token/v_ratio"} <= set(asym)
    assert all(isinstance(v, float) for v in asym.values())


def test_vanilla_mlp_token_mixing_matches_transposed_formulation():
    torch.manual_seed(0)
    mlp = VanillaMlp(dim=7, hidden=3, mix_dim=-2, bias=True)
    torch.nn.init.normal_(mlp.b1)
    torch.nn.init.normal_(mlp.b2)
    x = torch.randn(2, 7, 5)  # (B, S, C)
    ref = (F.linear(F.gelu(F.linear(x.transpose(1, 2), mlp.w1, mlp.b1)), mlp.w2, mlp.b2)
           .transpose(1, 2))
    torch.testing.assert_close(mlp(x), ref)
    amlp = AsymmetricMlp(dim=7, hidden=3, mix_dim=-2)
    h = F.gelu(F.linear(x.transpose(1, 2), amlp.w))
    ref = (F.linear(h, amlp.w.t()) + F.linear(h, amlp.v)).transpose(1, 2)
    torch.testing.assert_close(amlp(x), ref)


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"dim": 0}, "model.dim=0"),
        ({"depth": 0}, "model.depth=0"),
        ({"patch_size": 3}, "model.patch_size=3 does not divide the image size 28"),
        ({"sb_lambda": -1.0}, "model.sb_lambda=-1.0"),
        ({"sb_lambda": "abc"}, "model.sb_lambda='abc'"),
        ({"sb_lambda": float("nan")}, "model.sb_lambda=nan"),
        ({"mlp": "weird"}, "model.mlp='weird' is unknown"),
        ({"block": "zigzag"}, "model.block='zigzag' is unknown"),
        ({"norm": "batch"}, "model.norm='batch' is unknown"),
        ({"n_iter": 0}, "model.n_iter=0"),
        ({"drop_path": 1.0}, "model.drop_path=1.0"),
        ({"token_ratio": 0.001}, "model.token_ratio=0.001"),
    ],
)
def test_invalid_construction_names_value_and_valid_range(kwargs, needle):
    with pytest.raises(ValueError) as err:
        Mixer(**kwargs)
    assert needle in str(err.value)
    assert any(word in str(err.value) for word in ("valid", "must", ">=", "in [0, 1)"))


def test_symmetric_mlp_rejects_bias():
    with pytest.raises(ValueError, match="bias=True is not valid"):
        SymmetricMlp(dim=4, hidden=2, bias=True)


def test_init_is_mixer_init():
    model = build("vanilla")
    assert torch.count_nonzero(model.head.weight) == 0
    assert torch.count_nonzero(model.head.bias) == 0
    w = model.blocks[0].channel_mlp.w1
    bound = (6 / (w.shape[0] + w.shape[1])) ** 0.5  # xavier-uniform
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    # re-initialising gives a different draw but the same distribution family
    m2 = copy.deepcopy(model)
    m2.init_weights()
    assert not torch.equal(m2.blocks[0].channel_mlp.w1, w)
