"""Figure 2: AsymMixer accuracy against the symmetry-breaking penalty sb_lambda (λ) on a log
axis, one curve per configuration (depth / width, when swept), and as horizontal reference
lines (λ = 0 cannot sit on a log axis) its λ = 0 runs, the SymMixer (the λ -> infinity limit)
and every other model in the selection (the vanilla Mixer, ParaMixer); a note names a missing
SymMixer or vanilla reference. The λ selected on the validation accuracy (analysis/
selection.py) is starred and listed in table 2b. The models come from the variant table:
every variant sb_lambda applies to, with its limit (``models.lambda_limit``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.transforms import blended_transform_factory

from analysis.figure_result import Drawn, Skipped
from analysis.groups import (
    arch_label,
    finished,
    has_lambda,
    lambda_limit,
    lambda_mask,
    replicates,
    varied,
)
from analysis.load_runs import RunTables
from analysis.selection import (
    NO_SELECTION,
    SELECT_ON,
    accuracy_columns,
    accuracy_notes,
    select_best,
)
from analysis.style import (
    ACC_LABEL,
    ACC_RANGE,
    LAMBDA0_COLOR,
    LAMBDA_LABEL,
    fit_text,
    group_palette,
    model_color,
    new_figure,
    save_figure,
)
from analysis.tables import summarize
from models import VARIANTS

NAME = "fig2_accuracy_vs_lambda"
# the reference lines a reader expects beside the λ curve: its λ -> infinity limit (SymMixer,
# from the variant table) and the vanilla Mixer
VANILLA = "vanilla"
# line styles of the reference models, in the variant table's order (λ = 0 is dashed)
_REF_STYLES = [":", "-.", (0, (5, 1.5, 1, 1.5, 1, 1.5)), (0, (1, 2.5))]


def _lambda_models(models: pd.Series) -> list[str]:
    """The models of ``models`` that sb_lambda applies to, in the table's order."""
    present = set(models[lambda_mask(models)])
    return [m for m in VARIANTS if m in present]


def lambda_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Accuracy per (configuration, sb_lambda) for each model sb_lambda applies to (AsymMixer),
    plus its sb_lambda = 0 rows and one reference row per other model in the runs (column
    ``curve``: 'asym', 'asym λ=0', 'sym', 'vanilla', ...): test accuracy (``acc_*``), then
    validation accuracy, ``n_test`` and ``test_sd`` (``attrs["notes"]``)."""
    df = replicates(finished(runs))
    swept = df[lambda_mask(df["model"])]
    positive = sorted(float(v) for v in swept.loc[swept["sb_lambda"] > 0, "sb_lambda"].unique())
    labels = " / ".join(VARIANTS[m].label for m in _lambda_models(df["model"])) or "AsymMixer"
    if len(positive) < 2:
        raise Skipped(f"needs {labels} runs at >= 2 values of sb_lambda > 0, found {positive}")
    keys = varied(df)
    df = df.copy()
    is_ref = ~lambda_mask(df["model"])
    df["curve"] = [m if ref else (f"{m} λ=0" if sb_lambda == 0 else m)
                   for m, sb_lambda, ref in zip(df["model"], df["sb_lambda"], is_ref,
                                                strict=False)]
    df.loc[is_ref, "sb_lambda"] = float("nan")
    by = ["curve", *keys, "sb_lambda"]
    table = pd.concat([summarize(df, by, "acc"), accuracy_columns(df, by)], axis=1)
    # per model in the table's order: the curves, then their λ = 0 rows, then the references
    rank = {m: i for i, m in enumerate(VARIANTS)}
    models = list(dict.fromkeys(df["model"]))
    rank.update({m: len(rank) + i for i, m in enumerate(sorted(set(models) - set(rank)))})
    order = {**{m: rank[m] for m in models if has_lambda(m)},
             **{f"{m} λ=0": len(rank) + rank[m] for m in models if has_lambda(m)},
             **{m: 2 * len(rank) + rank[m] for m in models if not has_lambda(m)}}
    table = table.sort_values(by, key=lambda s: s.map(order) if s.name == "curve" else s,
                              kind="stable").reset_index(drop=True)
    table = table.rename(columns={"sb_lambda": "λ", "n": "seeds", "mean": "acc_mean",
                                  "std": "acc_std", "ci95": "acc_ci95", "lo": "acc_lo",
                                  "hi": "acc_hi"})
    table.attrs["notes"] = accuracy_notes(df)
    return table


def best_lambda_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per model sb_lambda applies to and configuration: the sb_lambda (0 included) with the
    highest mean validation accuracy over seeds, and its test accuracy (reported only). No
    selection (``selected_on`` = NO_SELECTION) where the runs logged no val_acc."""
    df = replicates(finished(runs))
    keys = varied(df)
    df = df[lambda_mask(df["model"])]
    best = select_best(df, ["model", *keys], "sb_lambda").rename(columns={"sb_lambda": "λ"})
    notes = [f"λ selected per row on the mean {SELECT_ON} over seeds (the held-out validation "
             "split); test_acc_mean is the selected λ's test accuracy, reported only. "
             "candidates: values of λ with a validation accuracy."]
    if (best["selected_on"] == NO_SELECTION).any():
        notes.append("selected_on 'none: no val_acc': these runs logged no validation "
                     "accuracy, and choosing λ on the test accuracy would overstate the "
                     "chosen λ's score, so no λ is selected (rerun with data.val_fraction > 0).")
    best.attrs["notes"] = notes
    return best


def _references(models: list[str]) -> list[str]:
    """The reference models of the λ curves: each curve's limit, the vanilla Mixer, and any
    other model of the runs, in the variant table's order."""
    return [m for m in [*VARIANTS, *sorted(set(models) - set(VARIANTS))]
            if m in models and not has_lambda(m)]


def draw(tables: RunTables, out: Path) -> Drawn:
    """Curves with 95 % bands; dashed: sb_lambda = 0; dotted and dash-dotted: the SymMixer,
    the vanilla Mixer and any other model; a star: the λ selected on val_acc (on the left
    edge when it is λ = 0). One configuration: the models' colours; several: one colour per
    configuration, and the legend gives styles and colours apart."""
    table = lambda_table(tables.runs)
    best = best_lambda_table(tables.runs)
    keys = [c for c in table.columns if c in varied(replicates(finished(tables.runs)))]
    table["arch"] = [arch_label(r, keys) for _, r in table.iterrows()]
    best["arch"] = [arch_label(r, keys) for _, r in best.iterrows()]
    archs = list(dict.fromkeys(table["arch"]))
    colors = group_palette(archs)
    swept = [m for m in VARIANTS if has_lambda(m) and table["curve"].isin([m, f"{m} λ=0"]).any()]
    refs = _references([m for m in dict.fromkeys(table["curve"]) if " λ=0" not in m])
    styles = dict(zip(refs, _REF_STYLES * len(refs), strict=False))
    one = len(archs) == 1  # one configuration: the models' colours; several: one per config
    fig, ax = new_figure((7.0, 4.0))
    left = blended_transform_factory(ax.transAxes, ax.transData)
    legend: dict[str, Line2D] = {}  # label -> handle, in drawing order

    def key(text: str, color: object, **style: object) -> None:
        legend.setdefault(text, Line2D([], [], color=color, **style))

    for arch in archs:
        part = table[table["arch"] == arch]
        for model in swept:
            label = VARIANTS[model].label
            curve = part[part["curve"] == model].sort_values("λ")
            color = model_color(model) if one else colors[arch]
            ax.plot(curve["λ"], curve["acc_mean"], "o-", color=color, lw=1.8, ms=5)
            ax.fill_between(curve["λ"], curve["acc_lo"].clip(*ACC_RANGE),
                            curve["acc_hi"].clip(*ACC_RANGE), color=color, alpha=0.18, lw=0)
            key(f"{label}(λ)", color if one else "0.25", marker="o", ms=5, lw=1.8)
            zero = part[part["curve"] == f"{model} λ=0"]
            if not zero.empty:
                zero_color = LAMBDA0_COLOR if one else color
                ax.axhline(zero["acc_mean"].iloc[0], color=zero_color, ls="--", lw=1.6)
                key(f"{label} λ=0", zero_color if one else "0.25", ls="--", lw=1.6)
            pick = best[(best["model"] == model) & (best["arch"] == arch)
                        & (best["selected_on"] == SELECT_ON)]
            if not pick.empty:
                lam = float(pick["λ"].iloc[0])
                y = (curve.loc[curve["λ"] == lam, "acc_mean"] if lam > 0
                     else zero["acc_mean"]).iloc[0]
                ax.plot(lam if lam > 0 else 0.015, y, marker="*", ms=13, color=color, mec="k",
                        mew=0.7, ls="none", zorder=5,
                        transform=ax.transData if lam > 0 else left)
                key(f"best λ on {SELECT_ON}\n(left edge: λ=0)", color if one
                    else "0.25", marker="*", ms=11, mec="k", mew=0.7, ls="none")
        for model in refs:
            ref = part[part["curve"] == model]
            if not ref.empty:
                color = model_color(model) if one else colors[arch]
                ax.axhline(ref["acc_mean"].iloc[0], color=color, ls=styles[model], lw=1.6)
                key(VARIANTS[model].label if model in VARIANTS else model,
                    color if one else "0.25", ls=styles[model], lw=1.6)
    if not one:
        for arch in archs:
            key(arch, colors[arch], lw=6)
    ax.set_xscale("log")
    ax.set_xlabel(LAMBDA_LABEL)
    ax.set_ylabel(ACC_LABEL)
    names = " / ".join(VARIANTS[m].label for m in swept)
    drawn_refs = (["λ = 0"] if table["curve"].str.endswith(" λ=0").any() else []) + [
        VARIANTS[m].label if m in VARIANTS else m for m in refs]
    title = fig.suptitle(f"{names} test accuracy against symmetry-breaking strength\nmean and "
                         "95% CI over seeds" + (f"; horizontal lines: {', '.join(drawn_refs)}"
                                                if drawn_refs else ""), fontsize=10.5)
    fig.legend(list(legend.values()), list(legend), loc="outside right center", fontsize=7.5)
    fit_text(fig, title)
    files = save_figure(fig, out, NAME)
    limits = {lambda_limit(m).name for m in swept if lambda_limit(m) is not None}
    missing = [VARIANTS[m].label if m in VARIANTS else m for m in [*sorted(limits), VANILLA]
               if m not in refs]
    note = f"no {' or '.join(missing)} runs in the selection: reference line missing" \
        if missing else ""
    return Drawn(NAME, files, {"table2_accuracy_vs_lambda": table.drop(columns="arch"),
                               "table2b_best_lambda": best.drop(columns="arch")}, note=note)
