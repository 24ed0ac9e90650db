"""Figure 1: test accuracy of every model variant (SymMixer, AsymMixer per sb_lambda,
ParaMixer, the vanilla Mixer, and any other in the table or the runs), mean and 95 % interval
over seeds (one dot per seed), and the same as a table (with the validation accuracy and the
test set's binomial sampling error, analysis/selection.py); beside it, Welch's t-test of every
variant against the vanilla Mixer and against the SymMixer (raw and Holm-adjusted p)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.figure_result import Drawn, Skipped
from analysis.groups import (
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
from analysis.significance import welch_table
from analysis.style import (
    ACC_LABEL,
    ACC_RANGE,
    group_palette,
    model_color,
    new_figure,
    save_figure,
)
from analysis.tables import summarize

NAME = "fig1_accuracy"


def accuracy_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and 95 % interval of the final test accuracy per model variant (and per
    configuration when depth / width / n_iter / dataset or another param vary), in the paper's
    order, then the mean and std of the validation accuracy, ``n_test`` and ``test_sd`` (the
    binomial sd of one run's test accuracy); ``attrs["notes"]`` says which is which."""
    df = replicates(finished(runs))
    if df.empty:
        raise Skipped("no FINISHED run with a final test accuracy")
    keys = varied(df)
    # sb_lambda tells apart the variants it applies to; for the others it is not a variant key
    df["sb_lambda"] = np.where(lambda_mask(df["model"]), df["sb_lambda"], np.nan)
    summary = summarize(df, ["model", "sb_lambda", *keys], "acc")
    summary = pd.concat([summary, accuracy_columns(df, ["model", "sb_lambda", *keys])], axis=1)
    pairs = zip(summary["model"], summary["sb_lambda"], strict=True)
    summary.insert(0, "variant", [display_name(m, sb_lambda) for m, sb_lambda in pairs])
    order = sorted(range(len(summary)), key=lambda i: (
        variant_sort_key(summary["model"][i], summary["sb_lambda"][i]),
        tuple(summary[k][i] for k in keys)))
    summary = summary.iloc[order].reset_index(drop=True)
    summary = summary.rename(columns={"sb_lambda": "λ", "n": "seeds", "mean": "acc_mean",
                                      "std": "acc_std", "ci95": "acc_ci95", "lo": "acc_lo",
                                      "hi": "acc_hi"})
    summary.attrs["notes"] = accuracy_notes(df)
    return summary


def draw(tables: RunTables, out: Path) -> Drawn:
    """Point plot of accuracy per variant (horizontal), seeds as dots; table beside it."""
    summary = accuracy_table(tables.runs)
    df = replicates(finished(tables.runs))
    keys = varied(df)
    df["variant"] = [display_name(m, sb_lambda)
                     for m, sb_lambda in zip(df["model"], df["sb_lambda"], strict=False)]
    df["arch"] = [arch_label(r, keys) for _, r in df.iterrows()]
    summary["arch"] = [arch_label(r, keys) for _, r in summary.iterrows()]
    variants = list(dict.fromkeys(summary["variant"]))
    archs = list(dict.fromkeys(summary["arch"]))
    rows = len(variants) * max(1, len(archs)) ** 0.5
    fig, ax = new_figure((7.0, 4.0 if rows <= 8 else round(0.4 * rows + 0.8)))
    arch_colors = group_palette(archs)
    offsets = np.linspace(-0.22, 0.22, len(archs)) if len(archs) > 1 else [0.0]
    for j, arch in enumerate(archs):
        part = summary[summary["arch"] == arch]
        for _, row in part.iterrows():
            y = variants.index(row["variant"]) + offsets[j]
            color = arch_colors[arch] if len(archs) > 1 else model_color(row["model"])
            seeds = df[(df["variant"] == row["variant"]) & (df["arch"] == arch)]["acc"]
            jitter = np.random.default_rng(0).uniform(-0.06, 0.06, len(seeds))
            ax.scatter(seeds, y + jitter, s=14, color=color, alpha=0.45, linewidths=0)
            lo, hi = (np.clip([row["acc_lo"], row["acc_hi"]], *ACC_RANGE)
                      if row["acc_ci95"] == row["acc_ci95"] else (row["acc_mean"],) * 2)
            err = [[row["acc_mean"] - lo], [hi - row["acc_mean"]]]
            ax.errorbar(row["acc_mean"], y, xerr=err, fmt="o", color=color, ms=6, capsize=3,
                        lw=1.6, label=arch if len(archs) > 1 else None)
    ax.set_yticks(range(len(variants)), variants)
    ax.invert_yaxis()
    ax.set_xlabel(ACC_LABEL)
    ax.set_ylabel("")
    n_seeds = int(summary["seeds"].max())
    dataset = ", ".join(sorted(str(d) for d in df["dataset"].dropna().unique()))
    ax.set_title(f"Test accuracy by model ({dataset})\nmean ± 95% CI over {n_seeds} "
                 f"seed{'s' if n_seeds > 1 else ''}; dots: single seeds")
    if len(archs) > 1:
        handles, labels = ax.get_legend_handles_labels()
        uniq = dict(zip(labels, handles, strict=False))
        ax.legend(uniq.values(), uniq.keys(), title="architecture", loc="best")
    files = save_figure(fig, out, NAME)
    out_tables = {"table1_accuracy": summary.drop(columns=["arch"])}
    for reference, name in (("vanilla", "table1b_welch_vs_vanilla"),
                            ("sym", "table1c_welch_vs_sym")):
        welch = welch_table(tables.runs, reference)
        if not welch.empty:
            out_tables[name] = welch
    return Drawn(NAME, files, out_tables)
