"""Figure 2: AsymMixer accuracy against the symmetry-breaking penalty lam on a log axis, one
curve per depth / width (when swept), lam = 0 and SymMixer as horizontal reference lines
(lam = 0 cannot sit on a log axis)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.figure_result import Drawn, Skipped
from analysis.groups import arch_label, finished, varied
from analysis.load_runs import RunTables
from analysis.style import (
    ACC_LABEL,
    ACC_RANGE,
    LAM_LABEL,
    MODEL_COLORS,
    REF_COLORS,
    group_palette,
    new_figure,
    save_figure,
)
from analysis.tables import summarize

NAME = "fig2_accuracy_vs_lambda"


def lambda_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Accuracy per (architecture, lam) for AsymMixer, plus the lam = 0 and SymMixer reference
    rows (column ``curve``: 'asym', 'asym λ=0', 'sym')."""
    df = finished(runs)
    asym = df[df["model"] == "asym"]
    positive = sorted(float(v) for v in asym.loc[asym["lam"] > 0, "lam"].unique())
    if len(positive) < 2:
        raise Skipped(f"needs AsymMixer runs at >= 2 values of lam > 0, found {positive}")
    keys = varied(df[df["model"].isin(["asym", "sym"])])
    df = df[df["model"].isin(["asym", "sym"])].copy()
    df["curve"] = ["sym" if m == "sym" else ("asym λ=0" if lam == 0 else "asym")
                   for m, lam in zip(df["model"], df["lam"], strict=False)]
    df.loc[df["model"] == "sym", "lam"] = float("nan")
    table = summarize(df, ["curve", *keys, "lam"], "acc")
    order = {"asym": 0, "asym λ=0": 1, "sym": 2}
    table = table.sort_values(["curve", *keys, "lam"], key=lambda s: s.map(order)
                              if s.name == "curve" else s).reset_index(drop=True)
    return table.rename(columns={"lam": "λ", "n": "seeds", "mean": "acc_mean",
                                 "std": "acc_std", "ci95": "acc_ci95", "lo": "acc_lo",
                                 "hi": "acc_hi"})


def draw(tables: RunTables, out: Path) -> Drawn:
    """Curves with 95 % bands; dashed: lam = 0, dotted: SymMixer, in the curve's colour."""
    table = lambda_table(tables.runs)
    keys = [c for c in ("dataset", "depth", "dim", "n_iter") if c in table.columns]
    table["arch"] = [arch_label(r, keys) for _, r in table.iterrows()]
    archs = list(dict.fromkeys(table["arch"]))
    colors = group_palette(archs)
    fig, ax = new_figure((7.0, 4.0))
    for arch in archs:
        part = table[table["arch"] == arch]
        curve = part[part["curve"] == "asym"].sort_values("λ")
        one = len(archs) == 1  # one curve: the models' colours; several: one colour per curve
        color = MODEL_COLORS["asym"] if one else colors[arch]
        label = f"AsymMixer, {arch}" if arch else "AsymMixer(λ)"
        ax.plot(curve["λ"], curve["acc_mean"], "o-", color=color, lw=1.8, ms=5, label=label)
        ax.fill_between(curve["λ"], curve["acc_lo"].clip(*ACC_RANGE),
                        curve["acc_hi"].clip(*ACC_RANGE), color=color, alpha=0.18, lw=0)
        for name, style, text in (("asym λ=0", "--", "AsymMixer λ=0"),
                                  ("sym", ":", "SymMixer")):
            ref = part[part["curve"] == name]
            if not ref.empty:
                ax.axhline(ref["acc_mean"].iloc[0], color=REF_COLORS[name] if one else color,
                           ls=style, lw=1.6,
                           label=f"{text}, {arch}" if arch else text)
    ax.set_xscale("log")
    ax.set_xlabel(LAM_LABEL)
    ax.set_ylabel(ACC_LABEL)
    refs = [text for name, text in (("asym λ=0", "λ = 0"), ("sym", "SymMixer"))
            if (table["curve"] == name).any()]
    ax.set_title("AsymMixer accuracy against symmetry-breaking strength\nmean and 95% CI over "
                 "seeds" + (f"; {' and '.join(refs)} as reference lines" if refs else ""))
    ax.legend(loc="best", ncol=1 if len(archs) < 3 else 2)
    files = save_figure(fig, out, NAME)
    return Drawn(NAME, files, {"table2_accuracy_vs_lambda": table.drop(columns="arch")})
