"""Figure 2: AsymMixer accuracy against the symmetry-breaking penalty sb_lambda (λ) on a log
axis, one curve per depth / width (when swept), λ = 0 and SymMixer (the λ -> infinity limit) as
horizontal reference lines (λ = 0 cannot sit on a log axis). The models come from the variant
table: every variant sb_lambda applies to, with its limit (``models.lambda_limit``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.figure_result import Drawn, Skipped
from analysis.groups import (
    arch_label,
    finished,
    has_lambda,
    lambda_limit,
    lambda_mask,
    varied,
)
from analysis.load_runs import RunTables
from analysis.style import (
    ACC_LABEL,
    ACC_RANGE,
    LAMBDA0_COLOR,
    LAMBDA_LABEL,
    group_palette,
    model_color,
    new_figure,
    save_figure,
)
from analysis.tables import summarize
from models import VARIANTS

NAME = "fig2_accuracy_vs_lambda"


def _lambda_models(models: pd.Series) -> list[str]:
    """The models of ``models`` that sb_lambda applies to, in the table's order."""
    present = set(models[lambda_mask(models)])
    return [m for m in VARIANTS if m in present]


def lambda_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Accuracy per (architecture, sb_lambda) for each model sb_lambda applies to (AsymMixer),
    plus its sb_lambda = 0 and sb_lambda -> infinity (SymMixer) reference rows (column
    ``curve``: 'asym', 'asym λ=0', 'sym')."""
    df = finished(runs)
    swept = df[lambda_mask(df["model"])]
    positive = sorted(float(v) for v in swept.loc[swept["sb_lambda"] > 0, "sb_lambda"].unique())
    labels = " / ".join(VARIANTS[m].label for m in _lambda_models(df["model"])) or "AsymMixer"
    if len(positive) < 2:
        raise Skipped(f"needs {labels} runs at >= 2 values of sb_lambda > 0, found {positive}")
    limits = {m: lambda_limit(m) for m in _lambda_models(df["model"])}
    refs = {v.name for v in limits.values() if v is not None}
    keep = lambda_mask(df["model"]) | df["model"].isin(refs)
    keys = varied(df[keep])
    df = df[keep].copy()
    in_ref = df["model"].isin(refs) & ~lambda_mask(df["model"])
    df["curve"] = [m if ref else (f"{m} λ=0" if sb_lambda == 0 else m)
                   for m, sb_lambda, ref in zip(df["model"], df["sb_lambda"], in_ref,
                                                strict=False)]
    df.loc[in_ref, "sb_lambda"] = float("nan")
    table = summarize(df, ["curve", *keys, "sb_lambda"], "acc")
    # per model in the table's order: the curves, then their λ = 0 rows, then the references
    rank = {m: i for i, m in enumerate(VARIANTS)}
    order = {**{m: rank[m] for m in limits}, **{f"{m} λ=0": len(rank) + rank[m] for m in limits},
             **{m: 2 * len(rank) + rank[m] for m in refs}}
    table = table.sort_values(["curve", *keys, "sb_lambda"], key=lambda s: s.map(order)
                              if s.name == "curve" else s).reset_index(drop=True)
    return table.rename(columns={"sb_lambda": "λ", "n": "seeds", "mean": "acc_mean",
                                 "std": "acc_std", "ci95": "acc_ci95", "lo": "acc_lo",
                                 "hi": "acc_hi"})


def draw(tables: RunTables, out: Path) -> Drawn:
    """Curves with 95 % bands; dashed: sb_lambda = 0, dotted: its sb_lambda -> infinity limit
    (SymMixer), in the curve's colour."""
    table = lambda_table(tables.runs)
    keys = [c for c in ("dataset", "depth", "dim", "n_iter") if c in table.columns]
    table["arch"] = [arch_label(r, keys) for _, r in table.iterrows()]
    archs = list(dict.fromkeys(table["arch"]))
    colors = group_palette(archs)
    swept = [m for m in VARIANTS if has_lambda(m) and table["curve"].isin([m, f"{m} λ=0"]).any()]
    fig, ax = new_figure((7.0, 4.0))
    for arch in archs:
        part = table[table["arch"] == arch]
        for model in swept:
            variant, limit = VARIANTS[model], lambda_limit(model)
            curve = part[part["curve"] == model].sort_values("λ")
            one = len(archs) == 1  # one curve: the models' colours; several: one colour per curve
            color = model_color(model) if one else colors[arch]
            label = f"{variant.label}, {arch}" if arch else f"{variant.label}(λ)"
            ax.plot(curve["λ"], curve["acc_mean"], "o-", color=color, lw=1.8, ms=5, label=label)
            ax.fill_between(curve["λ"], curve["acc_lo"].clip(*ACC_RANGE),
                            curve["acc_hi"].clip(*ACC_RANGE), color=color, alpha=0.18, lw=0)
            references = [(f"{model} λ=0", "--", f"{variant.label} λ=0", LAMBDA0_COLOR)]
            if limit is not None:
                references.append((limit.name, ":", limit.label, model_color(limit.name)))
            for name, style, text, ref_color in references:
                ref = part[part["curve"] == name]
                if not ref.empty:
                    ax.axhline(ref["acc_mean"].iloc[0], color=ref_color if one else color,
                               ls=style, lw=1.6, label=f"{text}, {arch}" if arch else text)
    ax.set_xscale("log")
    ax.set_xlabel(LAMBDA_LABEL)
    ax.set_ylabel(ACC_LABEL)
    limits = [lambda_limit(m) for m in swept]
    refs = (["λ = 0"] if table["curve"].str.endswith(" λ=0").any() else []) + list(dict.fromkeys(
        v.label for v in limits if v is not None and (table["curve"] == v.name).any()))
    names = " / ".join(VARIANTS[m].label for m in swept)
    ax.set_title(f"{names} accuracy against symmetry-breaking strength\nmean and 95% CI over "
                 "seeds" + (f"; {' and '.join(refs)} as reference lines" if refs else ""))
    ax.legend(loc="best", ncol=1 if len(archs) < 3 else 2)
    files = save_figure(fig, out, NAME)
    return Drawn(NAME, files, {"table2_accuracy_vs_lambda": table.drop(columns="arch")})
