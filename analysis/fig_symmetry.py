"""Figure 3: (a) weight symmetry of the vanilla Mixer against epoch (from epoch 0, the
initialisation, when logged), one line per block, token and channel MLPs apart, 95 % band over
seeds, and the null band of independent random weights (cos 0 ± 2 / sqrt(d h)); one line
style per configuration (e.g. ``model.init``); (b) ||V||_F / ||W||_F of AsymMixer against λ,
for one configuration.

Metric names (models/mixer.py ``symmetry_measures``): ``symmetry/b{i}/{token|channel}/{cos|
symfrac|v_ratio}`` per block and ``symmetry/mean/{token|channel}/{measure}``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.ticker import FormatStrFormatter, NullFormatter

from analysis.figure_result import Drawn, Skipped
from analysis.groups import arch_label, finished, lambda_mask, replicates, varied
from analysis.load_runs import RunTables
from analysis.style import GRID, LAMBDA_LABEL, PAIR, fit_text, new_figure, save_figure
from analysis.tables import summarize

NAME_VANILLA = "fig3a_vanilla_symmetry"
NAME_V_RATIO = "fig3b_v_ratio_vs_lambda"
_KEY = re.compile(r"^symmetry/(b\d+|mean)/(token|channel)/(\w+)$")
MEASURES = {"cos": ("cos(W2, W1ᵀ)", {0.0: "independent", 1.0: "tied (symmetric)"}),
            "symfrac": ("symfrac = ‖S‖² / (‖S‖² + ‖A‖²)",
                        {0.5: "independent", 1.0: "tied (symmetric)"})}
_TABLE3A_COLUMNS = {"measure", "part", "block", "epoch", "n", "mean", "std", "ci95", "lo", "hi",
                    "null_sd", "null_lo", "null_hi"}
_CONFIG_STYLES = ["-", "--", ":", "-."]  # one per configuration of the vanilla runs


def _split_keys(df: pd.DataFrame, column: str) -> pd.DataFrame:
    parts = df[column].str.extract(_KEY)
    parts.columns = ["block", "part", "measure"]
    return pd.concat([df, parts], axis=1).dropna(subset=["block"])


def _main_group(runs: pd.DataFrame) -> tuple[pd.DataFrame, str, int]:
    """The runs of the most common configuration (a figure shows one), its label and the
    number of configurations."""
    keys = varied(runs)
    if not keys:
        return runs, "", 1
    labels = runs.apply(lambda r: arch_label(r, keys), axis=1)
    counts = labels.value_counts()
    return runs[labels == counts.index[0]], counts.index[0], len(counts)


def null_sd(row: pd.Series, part: str) -> float:
    """Standard deviation of cos(W2, W1^T) for independent random matrices of the shapes of
    run ``row``'s ``part`` ('token' or 'channel') MLP: 1 / sqrt(d h), with (models/mixer.py)
    token: d = S = (img_size / patch_size)^2, h = int(token_ratio C); channel: d = C,
    h = int(channel_ratio C). NaN when the run's params do not say."""
    def param(key: str) -> float:
        return float(row.get(f"params.model.{key}"))

    try:
        c = int(param("dim"))
        if part == "token":
            d, h = (int(param("img_size")) // int(param("patch_size"))) ** 2, \
                int(param("token_ratio") * c)
        else:
            d, h = c, int(param("channel_ratio") * c)
    except (TypeError, ValueError):
        return float("nan")
    return 1.0 / math.sqrt(d * h) if d * h > 0 else float("nan")


def vanilla_symmetry_table(tables: RunTables) -> pd.DataFrame:
    """Per (configuration, measure, part, block, epoch): seeds, mean, 95 % interval over the
    vanilla runs of one configuration (the keys ``varied`` finds among them, e.g.
    ``params.model.init``), and the null band ``null_lo``..``null_hi`` of independent weights:
    cos 0 ± 2 sd, symfrac 1/2 ± 2 sd / 2 (``null_sd``; symfrac - 1/2 is at most cos / 2).
    Epoch 0 (initialisation) is included when the runs logged it."""
    runs = tables.runs[(tables.runs["model"] == "vanilla")
                       & tables.runs["status"].isin(["FINISHED", "RUNNING"])]
    if runs.empty:
        raise Skipped("no vanilla Mixer runs")
    runs = replicates(runs)
    keys = varied(runs)
    hist = tables.epochs[tables.epochs["run_id"].isin(runs["run_id"])]
    hist = _split_keys(hist, "metric")
    hist = hist[(hist["block"] != "mean") & hist["measure"].isin(list(MEASURES))]
    if hist.empty:
        raise Skipped("the vanilla runs logged no per-epoch symmetry/b*/... metrics")
    hist = hist.assign(block=hist["block"].str[1:].astype(int))
    hist = hist.merge(runs[["run_id", *keys]], on="run_id", how="left")
    by = [*keys, "measure", "part", "block", "epoch"]
    table = summarize(hist, by, "value").sort_values(by).reset_index(drop=True)
    first = runs.groupby(keys, sort=False, dropna=False).head(1) if keys else runs.head(1)
    sds = pd.DataFrame([{**{k: r[k] for k in keys}, "part": part, "null_sd": null_sd(r, part)}
                        for _, r in first.iterrows() for part in ("token", "channel")])
    table = table.merge(sds, on=[*keys, "part"], how="left")
    half = 2 * table["null_sd"] * table["measure"].map({"cos": 1.0, "symfrac": 0.5})
    center = table["measure"].map({m: min(refs) for m, (_, refs) in MEASURES.items()})
    table["null_lo"], table["null_hi"] = center - half, center + half
    table.attrs["notes"] = [
        "null_lo..null_hi: the band of independent random weights of the same shapes, "
        "cos 0 ± 2/sqrt(d h), symfrac 1/2 ± 1/sqrt(d h) (token MLP: d = S tokens, "
        "h = int(token_ratio C); channel MLP: d = C, h = int(channel_ratio C)). Epoch 0: "
        "the weights at initialisation, when the runs logged them."]
    return table


def draw_vanilla(tables: RunTables, out: Path) -> Drawn:
    """2 x 2 panels: rows cos / symfrac, columns token / channel MLP; a line per block (one
    line style per configuration), the null band of independent weights shaded grey."""
    table = vanilla_symmetry_table(tables)
    keys = [c for c in table.columns if c not in _TABLE3A_COLUMNS]
    table["config"] = [arch_label(r, keys) for _, r in table.iterrows()]
    configs = list(dict.fromkeys(table["config"]))[:len(_CONFIG_STYLES)]
    measures = [m for m in MEASURES if m in set(table["measure"])]
    fig, axes = new_figure(GRID, len(measures), 2, sharex=True, squeeze=False)
    blocks = sorted(table["block"].unique())
    colors = sns.color_palette("viridis", len(blocks))
    for r, measure in enumerate(measures):
        ylabel, refs = MEASURES[measure]
        for c, part in enumerate(["token", "channel"]):
            ax = axes[r][c]
            panel = table[(table["measure"] == measure) & (table["part"] == part)]
            bands = panel[["null_lo", "null_hi"]].dropna().drop_duplicates()
            for i, (lo, hi) in enumerate(bands.itertuples(index=False)):
                ax.axhspan(lo, hi, color="0.55", alpha=0.22, lw=0,
                           label="null: independent, ±2 sd" if i == 0 else None)
            for config, style in zip(configs, _CONFIG_STYLES, strict=False):
                for b, color in zip(blocks, colors, strict=False):
                    d = panel[(panel["config"] == config) & (panel["block"] == b)]
                    ax.plot(d["epoch"], d["mean"], marker="o", ls=style, color=color, ms=3.5,
                            lw=1.6, label=f"block {b}" if config == configs[0] else None)
                    ax.fill_between(d["epoch"], d["lo"], d["hi"], color=color, alpha=0.2,
                                    lw=0)
            for value, text in refs.items():
                ax.axhline(value, color="0.4", ls="--" if value < 1 else ":", lw=1.0)
                ax.annotate(text, (1.0, value), xycoords=("axes fraction", "data"),
                            xytext=(-3, 3), textcoords="offset points", ha="right",
                            fontsize=7.5, color="0.3")
            ax.set_title(f"{part} MLP")
            ax.set_ylabel(ylabel if c == 0 else "")
            if r == len(measures) - 1:
                ax.set_xlabel("epoch (0: initialisation)" if (table["epoch"] == 0).any()
                              else "epoch")
                ax.xaxis.get_major_locator().set_params(integer=True)
    if len(configs) > 1:
        for config, style in zip(configs, _CONFIG_STYLES, strict=False):
            axes[0][1].plot([], [], color="k", ls=style, label=config)
    axes[0][1].legend(loc="center right", title="vanilla Mixer", fontsize=7)
    n = int(table["n"].max())
    where = f", {configs[0]}" if len(configs) == 1 and configs[0] else ""
    title = fig.suptitle(f"Weight symmetry of the vanilla Mixer during training{where} "
                         f"(mean, 95% CI over {n} seed{'s' if n > 1 else ''})")
    fit_text(fig, title)
    files = save_figure(fig, out, NAME_VANILLA)
    note = "" if len(set(table["config"])) <= len(configs) else \
        f"drew the first {len(configs)} configurations; all are in table3a"
    return Drawn(NAME_VANILLA, files, {"table3a_vanilla_symmetry": table.drop(
        columns="config")}, note=note)


def v_ratio_table(tables: RunTables) -> pd.DataFrame:
    """Final ||V||/||W|| per (part, block or 'mean', sb_lambda) over the seeds of the runs
    sb_lambda applies to (AsymMixer)."""
    runs = replicates(finished(tables.runs))
    runs = runs[lambda_mask(runs["model"])]
    if runs["sb_lambda"].nunique() < 2:
        raise Skipped(f"needs AsymMixer runs at >= 2 values of sb_lambda, found "
                      f"{sorted(float(v) for v in runs['sb_lambda'].dropna().unique())}")
    runs, arch, n_configs = _main_group(runs)
    cols = [c for c in runs.columns if _KEY.match(c.removeprefix("metrics."))
            and c.endswith("/v_ratio") and c.startswith("metrics.")]
    if not cols:
        raise Skipped("the AsymMixer runs logged no symmetry/*/v_ratio metrics")
    long = runs.melt(id_vars=["run_id", "sb_lambda"], value_vars=cols, var_name="metric")
    long["metric"] = long["metric"].str.removeprefix("metrics.")
    long = _split_keys(long, "metric")
    table = summarize(long, ["part", "block", "sb_lambda"], "value")
    table = table.sort_values(["part", "block", "sb_lambda"]).reset_index(drop=True).rename(
        columns={"sb_lambda": "λ", "n": "seeds"})
    table.attrs["config"] = arch
    if n_configs > 1:
        table.attrs["notes"] = [f"Runs of one configuration: {arch} (the most common of the "
                                f"{n_configs} in the selection; runs are never averaged across "
                                "configurations)."]
    return table


def draw_v_ratio(tables: RunTables, out: Path) -> Drawn:
    """Two panels (token, channel): ||V||/||W|| against sb_lambda, a thin line per block, the
    block mean thick; sb_lambda = 0 as dashed reference lines."""
    table = v_ratio_table(tables)
    arch = table.attrs["config"]
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
