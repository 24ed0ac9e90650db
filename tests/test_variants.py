"""The variant table (models/variants.py) is the one list of models: the Hydra configs, the
README and the colours agree with it, and a variant registered at run time builds, passes the
config check, gets a run name and shows up under its own label in a figure's table."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import seaborn as sns
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from test_models import PINNED

from analysis.fig_accuracy import draw as draw_accuracy
from analysis.load_runs import RunTables
from analysis.style import model_color
from models import (
    VARIANTS,
    Mixer,
    Variant,
    display_name,
    get_variant,
    lambda_limit,
    register_variant,
    run_name,
)
from sweep.validate import config_errors

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


def compose_job(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=["data=digits", *overrides])


@pytest.fixture
def probe():
    """A throwaway variant with a wiring / MLP combination the zoo does not have (serial +
    symmetric), removed again afterwards."""
    variant = register_variant(Variant(name="probe", block="serial", mlp="symmetric",
                                       label="ProbeMixer", order=10, color="#123456"))
    try:
        yield variant
    finally:
        VARIANTS.pop("probe")


def test_conf_models_are_the_table():
    assert sorted(p.stem for p in (CONF / "model").glob("*.yaml")) == sorted(VARIANTS)
    for variant in VARIANTS.values():
        model = compose_job(f"model={variant.name}").model
        assert (model.name, model.block, model.token_mixer, model.mlp) == (
            variant.name, variant.block, variant.token_mixer, variant.mlp)
        # the row's norm (when it fixes one) and knobs are what its config sets
        for key, value in variant.mixer_kwargs().items():
            assert model[key] == value, (variant.name, key)


def test_table_order_labels_and_colours_are_todays():
    assert list(VARIANTS)[:7] == ["sym", "asym", "para", "vanilla", "resmlp", "gmlp", "vit"]
    assert [v.label for v in VARIANTS.values()][:7] == [
        "SymMixer", "AsymMixer", "ParaMixer", "MLP-Mixer (vanilla)", "ResMLP", "gMLP", "ViT"]
    palette = sns.color_palette("colorblind")
    for name, index in {"sym": 0, "asym": 1, "para": 2, "vanilla": 4, "resmlp": 5, "gmlp": 9,
                        "vit": 7}.items():
        assert model_color(name) == tuple(palette[index])
    assert len({v.color for v in VARIANTS.values()}) == len(VARIANTS)  # one colour per model
    # what the figures read off the wiring and MLP kind, not off the names
    assert [v.name for v in VARIANTS.values() if v.has_lambda] == ["asym"]
    assert [v.name for v in VARIANTS.values() if v.is_hopfield] == ["sym", "asym"]
    assert [v.name for v in VARIANTS.values() if v.has_energy] == ["sym", "asym", "para"]
    assert lambda_limit("asym") is VARIANTS["sym"] and lambda_limit("sym") is None
    assert display_name("asym", 1e-4) == "AsymMixer λ=1e-4"
    assert display_name("sym", 1e-4) == "SymMixer" and display_name("other") == "other"


def test_readme_zoo_table_lists_the_table():
    text = (ROOT / "README.md").read_text()
    section = text.split("## The model zoo", 1)[1].split("\n\n", 2)[1]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]  # no header
    assert [r[0].strip("`") for r in rows] == list(VARIANTS)
    for row in rows:
        variant = VARIANTS[row[0].strip("`")]
        assert row[2] == variant.block and row[3] == variant.token_mixer, row
        assert row[4].split()[0] == variant.mlp, row
        cpu, s16 = (int(re.sub(r"\s", "", c)) for c in row[5:7])
        assert {"cpu": cpu, "s16": s16} == PINNED[variant.name]


def test_bad_variant_and_unknown_name_are_named():
    with pytest.raises(ValueError, match=r"block='zigzag' is unknown; valid: \[.*'serial'"):
        register_variant(Variant("bad", "zigzag", "symmetric", "Bad", 9, "#000000"))
    with pytest.raises(ValueError, match="color='red' is invalid"):
        register_variant(Variant("bad", "serial", "symmetric", "Bad", 9, "red"))
    with pytest.raises(ValueError, match="already registered"):
        register_variant(Variant("sym", "serial", "symmetric", "Sym", 0, "#000000"))
    assert "bad" not in VARIANTS
    with pytest.raises(ValueError, match=r"unknown model 'nope'; valid: \['sym', 'asym'"):
        get_variant("nope")


def test_config_check_holds_names_to_the_table():
    # a table name with another architecture would mislabel runs and figures
    errors = config_errors(compose_job("model=asym", "model.mlp=symmetric"))
    assert len(errors) == 1 and "model.mlp='symmetric' does not match model.name='asym'" \
        in errors[0] and "model.mlp=asymmetric" in errors[0]
    # a name outside the table is a one-off model: allowed with a valid block and MLP kind
    assert config_errors(compose_job("model=sym", "model.name=oneoff")) == []
    errors = config_errors(compose_job("model=sym", "model.name=oneoff", "model.mlp=weird"))
    assert errors == ["model.mlp='weird' is unknown; valid: ['asymmetric', 'symmetric', "
                      "'vanilla']"]


@pytest.mark.parametrize("overrides, needle", [
    (("model=vit", "model.num_heads=5"),
     "model.num_heads=5 does not divide the attention's width 128"),
    (("model=gmlp", "model.mlp=symmetric", "model.name=oneoff"),
     "model.mlp='symmetric' is not defined for model.block='gated'; valid: ['vanilla']"),
    (("model=resmlp", "model.norm=table"),
     "model.norm='table' does not match model.name='resmlp'"),
    (("model=vit", "model.token_mixer=linear"),
     "model.token_mixer='linear' does not match model.name='vit'"),
    (("model=vanilla", "model.name=oneoff", "model.token_mixer=mixing"),
     "model.token_mixer='mixing' is unknown"),
])
def test_config_check_refuses_bad_zoo_combinations_before_a_job(overrides, needle):
    errors = config_errors(compose_job(*overrides))
    assert len(errors) == 1 and needle in errors[0] and "valid" in errors[0], errors


def test_new_models_read_their_traits_off_the_slots():
    # no V, no Hopfield energy (serial / gated wirings; linear, attention, gating are no MLP)
    for name in ("resmlp", "gmlp", "vit"):
        variant = VARIANTS[name]
        assert not (variant.has_lambda or variant.has_energy or variant.is_hopfield), name
    # the same model with a V in its MLPs carries sb_lambda in its run name
    cfg = compose_job("model=vit", "model.name=asymvit", "model.mlp=asymmetric",
                      "model.sb_lambda=1e-3")
    assert config_errors(cfg) == []
    assert run_name(cfg.model, cfg.seed) == "asymvit-lam1e-3-d4-w128-s0"
    # a one-off parallel ViT has no energy: its token mixer is not an MLP
    para_vit = register_variant(Variant("para_vit", "parallel", "symmetric", "ParaViT", 20,
                                        "#654321", token_mixer="attention"))
    try:
        assert not para_vit.has_energy and not para_vit.is_hopfield
    finally:
        VARIANTS.pop("para_vit")


def test_registered_variant_builds_checks_names_and_is_drawn(probe, tmp_path):
    torch.manual_seed(0)
    model = Mixer(name=probe.name, block=probe.block, mlp=probe.mlp, img_size=8, patch_size=4,
                  dim=16, depth=2)
    torch.nn.init.normal_(model.head.weight, std=0.1)
    loss = F.cross_entropy(model(torch.randn(3, 1, 8, 8)), torch.tensor([0, 1, 2]))
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname

    cfg = compose_job("model=vanilla", "model.name=probe", "model.block=serial",
                      "model.mlp=symmetric", "model.sb_lambda=0.1")
    assert config_errors(cfg) == []
    assert any("does not match model.name='probe'" in e
               for e in config_errors(compose_job("model=sym", "model.name=probe")))
    assert run_name(cfg.model, cfg.seed) == "probe-d4-w128-s0"  # no V: no lam part
    assert display_name("probe", 0.1) == "ProbeMixer"

    runs = pd.DataFrame([
        {"run_id": f"{m}{s}", "model": m, "sb_lambda": lam, "depth": 2, "dim": 16, "n_iter": 1,
         "seed": s, "dataset": "digits", "status": "FINISHED", "acc": 70.0 + 5 * i + s}
        for i, (m, lam) in enumerate([("probe", 0.1), ("asym", 1e-4), ("vanilla", 0.0)])
        for s in (0, 1)])
    drawn = draw_accuracy(RunTables(runs=runs, epochs=pd.DataFrame()), tmp_path)
    table = drawn.tables["table1_accuracy"]
    # the table's order: AsymMixer (rank 1), vanilla (3), then the probe (10)
    assert list(table["variant"]) == ["AsymMixer λ=1e-4", "MLP-Mixer (vanilla)", "ProbeMixer"]
    probe_row = table[table["variant"] == "ProbeMixer"].iloc[0]
    assert probe_row["acc_mean"] == pytest.approx(70.5) and np.isnan(probe_row["λ"])
    assert (tmp_path / "fig1_accuracy.png").exists()


def test_control_runs_are_named_apart_from_the_runs_they_control():
    base = {"name": "vanilla", "mlp": "vanilla", "depth": 2, "dim": 64, "n_iter": 1}
    assert run_name(base, 0) == "vanilla-d2-w64-s0"
    assert run_name({**base, "init": "tied"}, 0) == "vanilla-tied-d2-w64-s0"
    asym = {**base, "name": "asym", "mlp": "asymmetric", "sb_lambda": 1e-4, "v_init": "zero"}
    assert run_name(asym, 1) == "asym-lam1e-4-v0-d2-w64-s1"
