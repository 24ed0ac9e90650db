"""Figure 5: the n_iter ablation, accuracy against the number of weight-shared repeats of each
block, one line per model variant (and configuration, when depth / width / ... vary), 95 %
interval over seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.figure_result import Drawn, Skipped
from analysis.groups import (
    ARCH_KEYS,
    arch_label,
    display_name,
    finished,
    lambda_mask,
    replicates,
    variant_sort_key,
    varied,
)
from analysis.load_runs import RunTables
from analysis.selection import accuracy_columns, accuracy_notes
from analysis.style import ACC_LABEL, model_color, new_figure, save_figure
from analysis.tables import summarize

NAME = "fig5_n_iter"


def n_iter_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Test accuracy per (variant, configuration, n_iter): seeds, mean, std, 95 % interval, then
    the validation accuracy, n_test and test_sd (``attrs["notes"]``)."""
    df = replicates(finished(runs))
    values = sorted(int(v) for v in df["n_iter"].dropna().unique())
    if len(values) < 2:
        raise Skipped(f"needs runs at >= 2 values of model.n_iter, found {values}")
    df["sb_lambda"] = np.where(lambda_mask(df["model"]), df["sb_lambda"], np.nan)
    keys = [k for k in varied(df) if k != "n_iter"]
    by = ["model", "sb_lambda", *keys, "n_iter"]
    table = pd.concat([summarize(df, by, "acc"), accuracy_columns(df, by)], axis=1)
    table.insert(0, "variant", [display_name(m, sb_lambda) for m, sb_lambda
                                in zip(table["model"], table["sb_lambda"], strict=False)])
    order = sorted(range(len(table)), key=lambda i: (
        variant_sort_key(table["model"][i], table["sb_lambda"][i]),
        tuple(str(table[k][i]) for k in keys), table["n_iter"][i]))
    table = table.iloc[order].reset_index(drop=True).rename(
        columns={"sb_lambda": "λ", "n": "seeds", "mean": "acc_mean", "std": "acc_std",
                 "ci95": "acc_ci95", "lo": "acc_lo", "hi": "acc_hi"})
    table.attrs["notes"] = accuracy_notes(df)
    return table


def line_labels(table: pd.DataFrame) -> list[str]:
    """One label per line of the figure: the variant and any other varied configuration, never
    n_iter (the x axis; with it every point was a line of its own)."""
    keys = [c for c in table.columns
            if (c in ARCH_KEYS or c.startswith("params.")) and c != "n_iter"]
    return [", ".join(filter(None, [r["variant"], arch_label(r, keys)]))
            for _, r in table.iterrows()]


def draw(tables: RunTables, out: Path) -> Drawn:
    """Lines with error bars per variant against n_iter."""
    table = n_iter_table(tables.runs)
    table["line"] = line_labels(table)
    fig, ax = new_figure((7.4, 4.0))
    lines = list(dict.fromkeys(table["line"]))
    offsets = np.linspace(-0.08, 0.08, len(lines)) if len(lines) > 1 else [0.0]
    for off, line in zip(offsets, lines, strict=False):
        d = table[table["line"] == line]
        model = d["model"].iloc[0]
        color = model_color(model)
        if (table["model"] == model).sum() > len(d):
            color = None  # several sb_lambda or configurations: distinct colours
        ax.errorbar(d["n_iter"] + off, d["acc_mean"], yerr=d["acc_ci95"].fillna(0), fmt="o-",
                    capsize=3, lw=1.6, ms=5, color=color, label=line)
    ax.set_xticks(sorted(table["n_iter"].unique()))
    ax.set_xlabel("n_iter (weight-shared repeats of each block)")
    ax.set_ylabel(ACC_LABEL)
    ax.set_title("n_iter ablation (mean ± 95% CI over seeds)")
    # beside the axes, not on them: "best" placed it over the error bars of a point (the
    # SymMixer's at n_iter 4 in docs/results/n_iter)
    fig.legend(loc="outside right center")
    files = save_figure(fig, out, NAME)
    return Drawn(NAME, files, {"table5_n_iter": table.drop(columns="line")})
