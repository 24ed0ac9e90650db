"""Figure 5: the n_iter ablation, accuracy against the number of weight-shared repeats of each
block, one line per model variant, 95 % interval over seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.figure_result import Drawn, Skipped
from analysis.groups import display_name, finished, has_lambda, lambda_mask, variant_sort_key
from analysis.load_runs import RunTables
from analysis.style import ACC_LABEL, model_color, new_figure, save_figure
from analysis.tables import summarize

NAME = "fig5_n_iter"


def n_iter_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Accuracy per (variant, n_iter): seeds, mean, std, 95 % interval."""
    df = finished(runs)
    values = sorted(int(v) for v in df["n_iter"].dropna().unique())
    if len(values) < 2:
        raise Skipped(f"needs runs at >= 2 values of model.n_iter, found {values}")
    df["sb_lambda"] = np.where(lambda_mask(df["model"]), df["sb_lambda"], np.nan)
    table = summarize(df, ["model", "sb_lambda", "n_iter"], "acc")
    table.insert(0, "variant", [display_name(m, sb_lambda) for m, sb_lambda
                                in zip(table["model"], table["sb_lambda"], strict=False)])
    order = sorted(range(len(table)), key=lambda i: (
        variant_sort_key(table["model"][i], table["sb_lambda"][i]), table["n_iter"][i]))
    return table.iloc[order].reset_index(drop=True).rename(
        columns={"sb_lambda": "λ", "n": "seeds", "mean": "acc_mean", "std": "acc_std",
                 "ci95": "acc_ci95", "lo": "acc_lo", "hi": "acc_hi"})


def draw(tables: RunTables, out: Path) -> Drawn:
    """Lines with error bars per variant against n_iter."""
    table = n_iter_table(tables.runs)
    fig, ax = new_figure((6.0, 4.0))
    variants = list(dict.fromkeys(table["variant"]))
    offsets = np.linspace(-0.08, 0.08, len(variants)) if len(variants) > 1 else [0.0]
    for off, variant in zip(offsets, variants, strict=False):
        d = table[table["variant"] == variant]
        model = d["model"].iloc[0]
        color = model_color(model)
        if has_lambda(model) and (table["model"] == model).sum() > len(d):
            color = None  # several sb_lambda: let matplotlib pick distinct colours
        ax.errorbar(d["n_iter"] + off, d["acc_mean"], yerr=d["acc_ci95"].fillna(0), fmt="o-",
                    capsize=3, lw=1.6, ms=5, color=color, label=variant)
    ax.set_xticks(sorted(table["n_iter"].unique()))
    ax.set_xlabel("n_iter (weight-shared repeats of each block)")
    ax.set_ylabel(ACC_LABEL)
    ax.set_title("n_iter ablation (mean ± 95% CI over seeds)")
    ax.legend(loc="best")
    files = save_figure(fig, out, NAME)
    return Drawn(NAME, files, {"table5_n_iter": table})
