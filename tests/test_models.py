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
    TOKEN_MIXERS,
    VARIANTS,
    Affine,
    AsymmetricMlp,
    AttentionTokenMixer,
    GatedBlock,
    LayerScale,
    LinearTokenMixer,
    Mixer,
    SymmetricMlp,
    VanillaMlp,
    block_weights,
    cosine_symmetry,
    num_params,
    symmetric_fraction,
)

CONF = Path(__file__).resolve().parents[1] / "conf"
REGISTRY = list(VARIANTS)  # the table; tests/test_variants.py checks conf/model/ matches it

# Parameter counts, 10 classes, no MLP biases (SCIENCE.md; an independent re-implementation
# of the authors' layers gives the same numbers). cpu: 28 px, 1 channel, patch 4, C 128, depth 4.
#
# By hand for the MetaFormer baselines (cpu: S 49, C 128, depth 4; s16: S 196, C 512, depth 8;
# every model adds stem C*ch*p^2 + C, final norm 2C and head 10C + 10, i.e. 3 722 (cpu) and
# 399 882 (s16)); per block:
#   resmlp: 2 Affine 4C + linear token W S^2 + channel MLP 8C^2 + 2 LayerScales 2C
#           cpu 4*(512 + 2 401 + 131 072 + 256) + 3 722 = 540 686
#           s16 8*(2 048 + 38 416 + 2 097 152 + 1 024) + 399 882 = 17 509 002
#   gmlp:   (h = 6C) LN 2C + W1 hC + W2 C h/2 + LN_v h + gating S^2 + S
#           cpu 4*(256 + 98 304 + 49 152 + 768 + 2 401 + 49) + 3 722 = 607 442
#           s16 8*(1 024 + 1 572 864 + 786 432 + 3 072 + 38 416 + 196) + 399 882 = 19 615 914
#   vit:    2 LN 4C + attention Wqkv, Wo 4C^2 + channel MLP 8C^2
#           cpu 4*(512 + 65 536 + 131 072) + 3 722 = 792 202
#           s16 8*(2 048 + 1 048 576 + 2 097 152) + 399 882 = 25 582 090
PINNED = {
    "vanilla": {"cpu": 653_450, "s16": 21_191_178},
    "para": {"cpu": 603_274, "s16": 19_585_546},
    "sym": {"cpu": 328_586, "s16": 10_795_530},
    "asym": {"cpu": 603_274, "s16": 19_585_546},
    "resmlp": {"cpu": 540_686, "s16": 17_509_002},
    "gmlp": {"cpu": 607_442, "s16": 19_615_914},
    "vit": {"cpu": 792_202, "s16": 25_582_090},
    # vanilla + per block the inner A1, A2 (h x h) of the implicit token mixer
    "imixer": {"cpu": 686_218, "s16": 22_239_754},
    # sym with a scalar gain (1) instead of the LayerNorm gain (S x C) in each block
    "energy_metaformer": {"cpu": 303_502, "s16": 9_992_722},
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
    # 8 samples: drop path (0.1 in every block) removes a branch for all of them with
    # probability 1e-8, so every parameter must get a gradient
    x = torch.randn(8, 1, 8, 8)
    logits = model(x)
    assert logits.shape == (8, 10)
    loss = F.cross_entropy(logits, torch.arange(8)) + model.regularizer()
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
        ({"token_mixer": "conv"}, "model.token_mixer='conv' is unknown"),
        ({"token_mixer": "attention", "num_heads": 5},
         "model.num_heads=5 does not divide the attention's width 128"),
        ({"token_mixer": "attention", "num_heads": 0}, "model.num_heads=0"),
        ({"block": "gated", "mlp": "symmetric"},
         "model.mlp='symmetric' is not defined for model.block='gated'; valid: ['vanilla']"),
        ({"block": "gated", "channel_ratio": 4.0078125}, "channel hidden size 513"),
        ({"layer_scale": -0.1}, "model.layer_scale=-0.1"),
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


# ---------------------------------------------------------------- the slots' pieces (issue 19)
def test_mlp_token_mixer_is_the_mlp_kinds_module_with_the_same_keys():
    # the paper variants keep their parameters and checkpoint keys through the token-mixer slot
    for kind, cls in (("vanilla", VanillaMlp), ("symmetric", SymmetricMlp),
                      ("asymmetric", AsymmetricMlp)):
        mixer = TOKEN_MIXERS["mlp"](dim=16, seq_len=4, hidden=8, mlp=kind, bias=False)
        assert type(mixer) is cls and mixer.mix_dim == -2
    keys = set(build("vanilla", "model.depth=1").state_dict())
    assert {"blocks.0.token_mlp.w1", "blocks.0.token_mlp.w2", "blocks.0.channel_mlp.w1",
            "blocks.0.norm1.weight", "norm.weight", "head.weight"} <= keys
    assert not any("ls_" in k for k in keys)  # LayerScale off: no parameter


def test_affine_is_identity_at_init_and_per_channel():
    torch.manual_seed(0)
    aff = Affine(5)
    x = torch.randn(2, 3, 5)
    torch.testing.assert_close(aff(x), x, rtol=0, atol=0)
    with torch.no_grad():
        aff.alpha.copy_(torch.arange(5.0))
        aff.beta.fill_(2.0)
    torch.testing.assert_close(aff(x), x * torch.arange(5.0) + 2.0)
    aff.reset_parameters()
    torch.testing.assert_close(aff(x), x, rtol=0, atol=0)
    resmlp = build("resmlp", "model.dim=16")
    assert all(isinstance(m, Affine) for blk in resmlp.blocks for m in (blk.norm1, blk.norm2))
    assert isinstance(resmlp.norm, Affine)  # the final norm follows model.norm


def test_layer_scale_starts_at_its_init_value():
    model = build("resmlp", "model.dim=16", "model.depth=2")
    scales = [m for m in model.modules() if isinstance(m, LayerScale)]
    assert len(scales) == 4  # token and channel branch of 2 blocks
    for ls in scales:
        assert torch.equal(ls.gamma, torch.full((16,), 0.1))
        ls.gamma.data.mul_(3)
    model.init_weights()
    assert all(torch.equal(ls.gamma, torch.full((16,), 0.1)) for ls in scales)
    # a ResMLP block at init: x + 0.1 W(x) along tokens, then x + 0.1 MLP(x) along channels
    blk = model.blocks[0].eval()
    x = torch.randn(2, 4, 16)
    y = x + 0.1 * (blk.token_mlp.weight @ x)
    y = y + 0.1 * blk.channel_mlp(y)
    torch.testing.assert_close(blk(x), y)


def test_gating_unit_at_init_passes_u_through():
    torch.manual_seed(0)
    blk = GatedBlock(dim=8, seq_len=5, token_hidden=4, channel_hidden=12, token_mixer="gating",
                     norm="token")
    v = torch.randn(3, 5, 6)
    gate = blk.spatial_gate(v)
    assert (gate - 1).abs().max() < 1e-4  # W_s ~ 0, b_s = 1
    x = torch.randn(3, 5, 8)
    u = F.gelu(F.linear(blk.norm(x), blk.channel_mlp.w1))[..., :6]
    torch.testing.assert_close(blk(x), x + F.linear(u, blk.channel_mlp.w2), atol=1e-4, rtol=0)
    # the gate is the spatial unit: W_s mixes tokens, after a LayerNorm of v
    with torch.no_grad():
        blk.token_mlp.weight.normal_()
    ref = blk.token_mlp.weight @ blk.norm_v(v) + blk.token_mlp.bias[:, None]
    torch.testing.assert_close(blk.spatial_gate(v), ref)


def test_attention_is_permutation_equivariant_over_tokens():
    torch.manual_seed(0)
    attn = AttentionTokenMixer(dim=16, seq_len=6, hidden=8, mlp="vanilla", bias=True,
                               num_heads=4).double()
    x = torch.randn(2, 6, 16, dtype=torch.double)
    perm = torch.randperm(6)
    torch.testing.assert_close(attn(x[:, perm]), attn(x)[:, perm])
    # a whole ViT (token norm, no position embedding) keeps it; mean pooling then forgets it
    vit = build("vit", "model.dim=16", "model.depth=2").double().eval()
    tokens = torch.randn(2, 4, 16, dtype=torch.double)
    perm = torch.tensor([2, 0, 3, 1])
    out, out_p = tokens, tokens[:, perm]
    for blk in vit.blocks:
        out, out_p = blk(out), blk(out_p)
    torch.testing.assert_close(out_p, out[:, perm])
    # ... unlike the linear token mixer, which sees positions
    lin = LinearTokenMixer(dim=16, seq_len=6, hidden=8, mlp="vanilla", bias=False).double()
    swap = torch.tensor([1, 0, 2, 3, 4, 5])
    assert not torch.allclose(lin(x[:, swap]),
                              lin(x)[:, swap])


def test_attention_matches_the_textbook_formula():
    torch.manual_seed(0)
    attn = AttentionTokenMixer(dim=8, seq_len=5, hidden=4, mlp="vanilla", bias=False,
                               num_heads=2).double()
    x = torch.randn(3, 5, 8, dtype=torch.double)
    q, k, v = attn.qkv(x).split(8, dim=-1)
    heads = []
    for h in range(2):
        sl = slice(4 * h, 4 * h + 4)
        a = torch.softmax(q[..., sl] @ k[..., sl].transpose(1, 2) / 2.0, dim=-1)  # sqrt(4)
        heads.append(a @ v[..., sl])
    torch.testing.assert_close(attn(x), attn.proj(torch.cat(heads, dim=-1)))


@pytest.mark.parametrize("overrides", [("model=para", "model.token_mixer=attention"),
                                       ("model=sym", "model.layer_scale=0.1"),
                                       ("model=resmlp",)])
def test_energy_refuses_blocks_it_does_not_describe(overrides):
    name, *rest = overrides
    model = build(name.split("=")[1], "model.dim=16", *rest)
    with pytest.raises(ValueError, match="the energy is defined (for|without)"):
        block_weights(model.blocks[0])


def test_mlp_kinds_apply_to_channel_mlps_of_the_new_models():
    # symmetric / asymmetric channel MLPs in ResMLP and ViT; the gated block refuses them
    for name in ("resmlp", "vit"):
        sym = build(name, "model.dim=16", "model.mlp=symmetric", "model.name=oneoff")
        assert all(isinstance(b.channel_mlp, SymmetricMlp) for b in sym.blocks)
        asym = build(name, "model.dim=16", "model.mlp=asymmetric", "model.name=oneoff",
                     "model.sb_lambda=0.5")
        assert asym.regularizer() > 0
        assert "symmetry/b0/channel/v_ratio" in asym.symmetry_measures()
    gm = build("gmlp", "model.dim=16").symmetry_measures()
    assert -1 <= gm["symmetry/b0/channel/cos"] <= 1 and "symmetry/b0/token/cos" not in gm
