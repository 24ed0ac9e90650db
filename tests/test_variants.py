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
        assert (model.name, model.block, model.mlp) == (variant.name, variant.block, variant.mlp)


def test_table_order_labels_and_colours_are_todays():
    assert list(VARIANTS) == ["sym", "asym", "para", "vanilla"]
    assert [v.label for v in VARIANTS.values()] == [
        "SymMixer", "AsymMixer", "ParaMixer", "MLP-Mixer (vanilla)"]
    palette = sns.color_palette("colorblind")
    for name, index in {"sym": 0, "asym": 1, "para": 2, "vanilla": 4}.items():
        assert model_color(name) == tuple(palette[index])
    # what the figures read off the wiring and MLP kind, not off the names
    assert [v.name for v in VARIANTS.values() if v.has_lambda] == ["asym"]
    assert [v.name for v in VARIANTS.values() if v.is_hopfield] == ["sym", "asym"]
    assert [v.name for v in VARIANTS.values() if not v.has_energy] == ["vanilla"]
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
        assert row[2] == variant.block and row[3].split()[0] == variant.mlp, row
        cpu, s16 = (int(re.sub(r"\s", "", c)) for c in row[4:6])
        assert {"cpu": cpu, "s16": s16} == PINNED[variant.name]


def test_bad_variant_and_unknown_name_are_named():
    with pytest.raises(ValueError, match=r"block='zigzag' is unknown; valid: \['parallel'"):
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
