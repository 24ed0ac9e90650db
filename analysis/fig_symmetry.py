"""Figure 3: (a) weight symmetry of the vanilla Mixer against epoch, one line per block, token
and channel MLPs apart, 95 % band over seeds; (b) ||V||_F / ||W||_F of AsymMixer against λ.

Metric names (models/mixer.py ``symmetry_measures``): ``symmetry/b{i}/{token|channel}/{cos|
symfrac|v_ratio}`` per block and ``symmetry/mean/{token|channel}/{measure}``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.ticker import FormatStrFormatter, NullFormatter

from analysis.figure_result import Drawn, Skipped
from analysis.groups import arch_label, finished, lambda_mask, varied
from analysis.load_runs import RunTables
from analysis.style import GRID, LAMBDA_LABEL, PAIR, new_figure, save_figure
from analysis.tables import summarize

NAME_VANILLA = "fig3a_vanilla_symmetry"
NAME_V_RATIO = "fig3b_v_ratio_vs_lambda"
_KEY = re.compile(r"^symmetry/(b\d+|mean)/(token|channel)/(\w+)$")
MEASURES = {"cos": ("cos(W2, W1ᵀ)", {0.0: "independent", 1.0: "tied (symmetric)"}),
            "symfrac": ("symfrac = ‖S‖² / (‖S‖² + ‖A‖²)",
                        {0.5: "independent", 1.0: "tied (symmetric)"})}


def _split_keys(df: pd.DataFrame, column: str) -> pd.DataFrame:
    parts = df[column].str.extract(_KEY)
    parts.columns = ["block", "part", "measure"]
    return pd.concat([df, parts], axis=1).dropna(subset=["block"])


def _main_group(runs: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The runs of the most common architecture (a figure shows one), and its label."""
    keys = varied(runs)
    if not keys:
        return runs, ""
    labels = runs.apply(lambda r: arch_label(r, keys), axis=1)
    best = labels.value_counts().index[0]
    return runs[labels == best], best


def vanilla_symmetry_table(tables: RunTables) -> pd.DataFrame:
    """Per (measure, part, block, epoch): seeds, mean, 95 % interval over the vanilla runs."""
    runs = tables.runs[(tables.runs["model"] == "vanilla")
                       & tables.runs["status"].isin(["FINISHED", "RUNNING"])]
    if runs.empty:
        raise Skipped("no vanilla Mixer runs")
    runs, _ = _main_group(runs)
    hist = tables.epochs[tables.epochs["run_id"].isin(runs["run_id"])]
    hist = _split_keys(hist, "metric")
    hist = hist[(hist["block"] != "mean") & hist["measure"].isin(list(MEASURES))]
    if hist.empty:
        raise Skipped("the vanilla runs logged no per-epoch symmetry/b*/... metrics")
    hist = hist.assign(block=hist["block"].str[1:].astype(int))
    table = summarize(hist, ["measure", "part", "block", "epoch"], "value")
    return table.sort_values(["measure", "part", "block", "epoch"]).reset_index(drop=True)


def draw_vanilla(tables: RunTables, out: Path) -> Drawn:
    """2 x 2 panels: rows cos / symfrac, columns token / channel MLP; a line per block."""
    table = vanilla_symmetry_table(tables)
    runs = tables.runs[tables.runs["model"] == "vanilla"]
    _, arch = _main_group(runs)
    measures = [m for m in MEASURES if m in set(table["measure"])]
    fig, axes = new_figure(GRID, len(measures), 2, sharex=True, squeeze=False)
    blocks = sorted(table["block"].unique())
    colors = sns.color_palette("viridis", len(blocks))
    for r, measure in enumerate(measures):
        ylabel, refs = MEASURES[measure]
        for c, part in enumerate(["token", "channel"]):
            ax = axes[r][c]
            for b, color in zip(blocks, colors, strict=False):
                d = table[(table["measure"] == measure) & (table["part"] == part)
                          & (table["block"] == b)]
                ax.plot(d["epoch"], d["mean"], "o-", color=color, ms=3.5, lw=1.6,
                        label=f"block {b}")
                ax.fill_between(d["epoch"], d["lo"], d["hi"], color=color, alpha=0.2, lw=0)
            for value, text in refs.items():
                ax.axhline(value, color="0.4", ls="--" if value < 1 else ":", lw=1.0)
                ax.annotate(text, (1.0, value), xycoords=("axes fraction", "data"),
                            xytext=(-3, 3), textcoords="offset points", ha="right",
                            fontsize=7.5, color="0.3")
            ax.set_title(f"{part} MLP")
            ax.set_ylabel(ylabel if c == 0 else "")
            if r == len(measures) - 1:
                ax.set_xlabel("epoch")
                ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0][1].legend(loc="center right", title="vanilla Mixer")
    n = int(table["n"].max())
    where = f", {arch}" if arch else ""
    fig.suptitle(f"Weight symmetry of the vanilla Mixer during training{where} "
                 f"(mean, 95% CI over {n} seed{'s' if n > 1 else ''})")
    files = save_figure(fig, out, NAME_VANILLA)
    return Drawn(NAME_VANILLA, files, {"table3a_vanilla_symmetry": table})


def v_ratio_table(tables: RunTables) -> pd.DataFrame:
    """Final ||V||/||W|| per (part, block or 'mean', sb_lambda) over the seeds of the runs
    sb_lambda applies to (AsymMixer)."""
    runs = finished(tables.runs)
    runs = runs[lambda_mask(runs["model"])]
    if runs["sb_lambda"].nunique() < 2:
        raise Skipped(f"needs AsymMixer runs at >= 2 values of sb_lambda, found "
                      f"{sorted(float(v) for v in runs['sb_lambda'].dropna().unique())}")
    runs, _ = _main_group(runs)
    cols = [c for c in runs.columns if _KEY.match(c.removeprefix("metrics."))
            and c.endswith("/v_ratio") and c.startswith("metrics.")]
    if not cols:
        raise Skipped("the AsymMixer runs logged no symmetry/*/v_ratio metrics")
    long = runs.melt(id_vars=["run_id", "sb_lambda"], value_vars=cols, var_name="metric")
    long["metric"] = long["metric"].str.removeprefix("metrics.")
    long = _split_keys(long, "metric")
    table = summarize(long, ["part", "block", "sb_lambda"], "value")
    return table.sort_values(["part", "block", "sb_lambda"]).reset_index(drop=True).rename(
        columns={"sb_lambda": "λ", "n": "seeds"})


def draw_v_ratio(tables: RunTables, out: Path) -> Drawn:
    """Two panels (token, channel): ||V||/||W|| against sb_lambda, a thin line per block, the
    block mean thick; sb_lambda = 0 as dashed reference lines."""
    table = v_ratio_table(tables)
    _, arch = _main_group(finished(tables.runs)[lambda d: lambda_mask(d["model"])])
    fig, axes = new_figure(PAIR, 1, 2, sharey=True)
    blocks = sorted(b for b in table["block"].unique() if b != "mean")
    colors = sns.color_palette("viridis", len(blocks))
    means = table.loc[table["mean"] > 0, "mean"]
    log_y = not means.empty and means.max() / means.min() > 10  # V spans decades over λ
    for ax, part in zip(axes, ["token", "channel"], strict=False):
        for b, color in [*zip(blocks, colors, strict=False), ("mean", "black")]:
            d = table[(table["part"] == part) & (table["block"] == b)]
            pos, zero = d[d["λ"] > 0], d[d["λ"] == 0]
            lw = 2.2 if b == "mean" else 1.2
            label = "mean over blocks" if b == "mean" else f"block {b[1:]}"
            ax.plot(pos["λ"], pos["mean"], "o-", color=color, lw=lw, ms=4, label=label)
            if b == "mean":  # one band, for the mean over blocks, keeps the panel readable
                ax.fill_between(pos["λ"], pos["lo"].clip(lower=0), pos["hi"], color=color,
                                alpha=0.12, lw=0)
            if not zero.empty:
                ax.axhline(zero["mean"].iloc[0], color=color, ls="--", lw=lw * 0.7)
        ax.set_xscale("log")
        if log_y:
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(LAMBDA_LABEL)
        ax.set_title(f"{part} MLP")
    axes[0].set_ylabel("‖V‖_F / ‖W‖_F" + (" (log scale)" if log_y else ""))
    axes[1].legend(loc="best", fontsize=7.5, title="dashed: λ = 0")
    where = f" ({arch})" if arch else ""
    fig.suptitle(f"Effective symmetry breaking of AsymMixer after training{where}")
    files = save_figure(fig, out, NAME_V_RATIO)
    return Drawn(NAME_V_RATIO, files, {"table3b_v_ratio": table})
