"""Figure 6: an Optuna study: optimisation history, parameter importances and the λ slice.

The study is found from the sweep's parent run: ``optimization_results.yaml`` (storage URL and
study name, written by hydra_plugins/mixerlab_optuna_sweeper) in the parent's ``sweep_dir``
tag or its ``optuna/`` artifacts, else the default journal ``<sweep_dir>/optuna_journal.log``.
When the study cannot be opened, the history and the λ slice are drawn from the child runs
(tag ``optuna_trial``, the final value of the ``objective`` param's metric) and the
importances are skipped.

Selection: the study's best trial is the best value of its objective (the sweep's
``objective``, ``val_acc`` by default: analysis/selection.py); table 6 ranks the trials on it
and reports each trial's test accuracy beside it. A study whose objective is the test accuracy
(run before validation splits) is named as such in the table's notes: its best test score is
biased upwards. The λ slice colours each trial by the most important other parameter
(fANOVA), so a λ trend is not confused with that parameter's.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import yaml
from matplotlib.colors import LogNorm

from analysis.figure_result import Drawn, Skipped
from analysis.load_runs import RunTables
from analysis.selection import SELECT_ON
from analysis.style import (
    LAMBDA_LABEL,
    WIDE,
    apply_style,
    fit_text,
    lambda_color,
    new_figure,
    save_figure,
)
from tracking.run_store import RunStore

if TYPE_CHECKING:
    import optuna

NAMES = ("fig6a_optuna_history", "fig6b_optuna_importances", "fig6c_optuna_lambda_slice")
SB_LAMBDA_PARAM = "model.sb_lambda"


def _study_location(store: RunStore, parent: pd.Series) -> tuple[str, str | None] | None:
    """(storage URL, study name or None) of the sweep's study, if it can be found."""
    sweep_dir = parent.get("tags.sweep_dir")
    results = Path(sweep_dir) / "optimization_results.yaml" if isinstance(sweep_dir, str) \
        else None
    if results is None or not results.exists():
        try:
            with tempfile.TemporaryDirectory() as tmp:
                path = store.download_artifact(parent["run_id"],
                                               "optuna/optimization_results.yaml", tmp)
                if path is not None:
                    info = yaml.safe_load(path.read_text())
                    return info["storage"], info.get("study_name")
        except Exception:  # noqa: BLE001 - unreadable artifact: try the default journal
            pass
        results = None
    if results is not None:
        info = yaml.safe_load(results.read_text())
        return info["storage"], info.get("study_name")
    if isinstance(sweep_dir, str) and (Path(sweep_dir) / "optuna_journal.log").exists():
        return "journal://" + str(Path(sweep_dir) / "optuna_journal.log"), None
    return None


def load_study(tables: RunTables, parent: pd.Series) -> optuna.Study | None:
    """The Optuna study of a sweep parent run, or None when it cannot be opened."""
    import optuna

    from tracking.optuna_storage import open_storage

    where = _study_location(RunStore(tables.tracking_uri), parent)
    if where is None:
        return None
    url, name = where
    try:
        storage = open_storage(url)
        if name is None:
            names = optuna.get_all_study_names(storage)
            name = names[-1] if names else None
        return optuna.load_study(study_name=name, storage=storage) if name else None
    except Exception:  # noqa: BLE001 - moved / unreadable storage: fall back to the runs
        return None


def trials_from_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """trial, state, value, sb_lambda of the child runs of an Optuna sweep."""
    df = runs[runs["tags.optuna_trial"].notna()].copy()
    objective = df["params.objective"].dropna().iloc[0] if "params.objective" in df else "test_acc"
    col = f"metrics.{objective}"
    df["value"] = pd.to_numeric(df[col], errors="coerce") if col in df else float("nan")
    df["trial"] = df["tags.optuna_trial"].astype(int)
    df["state"] = df["status"].map({"FINISHED": "COMPLETE", "KILLED": "PRUNED"}).fillna("FAIL")
    if "tags.optuna_state" in df:
        df.loc[df["tags.optuna_state"] == "PRUNED", "state"] = "PRUNED"
    df["test_acc_reported"] = df["acc"] if "acc" in df else float("nan")
    df["val_acc_"] = df["val_acc"] if "val_acc" in df else float("nan")
    columns = ["trial", "state", "value", "sb_lambda", "val_acc_", "test_acc_reported",
               "run_name"]
    if objective == "val_acc":  # the value column is it already; a second one would clash
        columns.remove("val_acc_")
    out = df[columns].sort_values("trial")
    out = out.rename(columns={"value": objective, "val_acc_": "val_acc"}).reset_index(drop=True)
    out.attrs["objective"] = objective
    return out


def _rank_and_notes(table: pd.DataFrame, value: str, objective: str,
                    maximize: bool) -> pd.DataFrame:
    """Rank the complete trials on ``value`` (the study's objective, 1 = best) and say in
    ``attrs["notes"]`` what selected and what is only reported."""
    done = table["state"] == "COMPLETE"
    table["rank"] = table.loc[done, value].rank(ascending=not maximize, method="min")
    notes = [f"Trials ranked on {value} = {objective}, the study's objective (what selected "
             "the best trial); test_acc_reported: the trial's final test accuracy, reported "
             "only."]
    if objective != SELECT_ON and "test" in objective:
        notes.append(f"This study selected on {objective}, the test set: its best trial's "
                     "test accuracy is biased upwards (the maximum of noisy scores). Searches "
                     f"select on {SELECT_ON} (a held-out validation split) instead.")
    table.attrs["notes"] = notes
    return table


def _objective_label(objective: str) -> str:
    return f"{objective} (%)" if objective.endswith("acc") else objective


def _optuna_figure(plot, name: str, out: Path, title: str, xlabel: str | None = None,
                   ylabel: str | None = None, **kwargs: object) -> list[Path]:
    """Draw with optuna.visualization.matplotlib, then restyle to the paper style."""
    apply_style()
    with plt.rc_context(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna's "experimental" warnings
        ax = plot(**kwargs)
        axes = list(ax.ravel()) if hasattr(ax, "ravel") else [ax]
        fig = axes[0].figure
        fig.set_size_inches(*WIDE)
        for a in axes:
            a.set_facecolor("white")
            a.grid(True, color="0.88", lw=0.6)
            for spine in a.spines.values():
                spine.set_edgecolor("0.8")
            if xlabel:
                a.set_xlabel(xlabel)
            if ylabel:
                a.set_ylabel(ylabel)
        for loc in ("left", "center", "right"):  # optuna titles some plots on the left
            axes[0].set_title("", loc=loc)
        # the figure's title, centred on the figure and shrunk to fit it (an axes title over
        # a plot with long tick labels runs off the figure's edge)
        text = fig.suptitle(title, fontweight="bold", fontsize=10.5)
        legend = axes[0].get_legend()
        if legend is not None:
            handles, labels = axes[0].get_legend_handles_labels()
            if len(handles) > 1:
                axes[0].legend(handles, labels, loc="best")
            else:
                legend.remove()
        try:
            fig.set_layout_engine("tight")
            fit_text(fig, text)
        except Exception:  # noqa: BLE001 - keep optuna's own layout
            pass
        return save_figure(fig, out, name)


def _history_from_runs(trials: pd.DataFrame, objective: str, out: Path) -> list[Path]:
    fig, ax = new_figure(WIDE)
    done = trials[trials["state"] == "COMPLETE"]
    ax.scatter(done["trial"], done[objective], color=lambda_color(), s=20,
               label="complete trial")
    pruned = trials[trials["state"] == "PRUNED"]
    ax.scatter(pruned["trial"], pruned[objective], color="0.6", marker="x", s=20,
               label="pruned trial (last value)")
    ax.step(done["trial"], done[objective].cummax(), where="post", color="k", lw=1.5,
            label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(_objective_label(objective))
    fit_text(fig, ax.set_title("Optuna optimisation history (from the MLflow child runs)"))
    ax.legend(loc="lower right")
    return save_figure(fig, out, NAMES[0])


def _slice_from_runs(trials: pd.DataFrame, objective: str, out: Path) -> list[Path]:
    fig, ax = new_figure(WIDE)
    done = trials[(trials["state"] == "COMPLETE") & (trials["sb_lambda"] > 0)]
    points = ax.scatter(done["sb_lambda"], done[objective], c=done["trial"], cmap="viridis", s=24)
    fig.colorbar(points, ax=ax, label="trial")
    ax.set_xscale("log")
    ax.set_xlabel(LAMBDA_LABEL)
    ax.set_ylabel(_objective_label(objective))
    fit_text(fig, ax.set_title("Optuna slice: objective against λ (from the MLflow child runs; "
                               "colour: trial, importances need the study)"))
    return save_figure(fig, out, NAMES[2])


def _slice_coloured(study: optuna.Study, color_by: str | None, label: str, out: Path,
                    title: str) -> list[Path]:
    """The complete trials' objective against λ, each point coloured by ``color_by`` (a
    searched param; the trial number when None): a legend for a few discrete values, a colour
    bar (log scaled for a log-searched param) otherwise."""
    trials = [t for t in study.trials
              if t.state.name == "COMPLETE" and SB_LAMBDA_PARAM in t.params]
    fig, ax = new_figure(WIDE)
    x = np.array([t.params[SB_LAMBDA_PARAM] for t in trials], dtype=float)
    y = np.array([t.values[0] for t in trials], dtype=float)
    values = [t.params.get(color_by) if color_by else t.number for t in trials]
    distinct = list(dict.fromkeys(v for v in values if v is not None))
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in distinct)
    if color_by is not None and (not numeric or len(distinct) <= 6):
        distinct = sorted(distinct) if numeric else distinct
        palette = sns.color_palette("viridis", len(distinct))
        for value, color in zip(distinct, palette, strict=True):
            pick = [i for i, v in enumerate(values) if v == value]
            ax.scatter(x[pick], y[pick], color=color, s=30, edgecolors="k", linewidths=0.4,
                       label=f"{value:g}" if numeric else str(value))
        ax.legend(title=color_by, loc="best", fontsize=7.5)
    else:
        dist = trials[0].distributions.get(color_by) if color_by and trials else None
        c = np.array(values, dtype=float)
        norm = LogNorm(c.min(), c.max()) if getattr(dist, "log", False) and c.min() > 0 \
            else None
        points = ax.scatter(x, y, c=c, cmap="viridis", norm=norm, s=30, edgecolors="k",
                            linewidths=0.4)
        fig.colorbar(points, ax=ax, label=color_by or "trial")
    if len(x) and x.min() > 0:
        ax.set_xscale("log")
    ax.set_xlabel(LAMBDA_LABEL)
    ax.set_ylabel(label)
    fit_text(fig, ax.set_title(title))
    return save_figure(fig, out, NAMES[2])


def _trials_table(study: optuna.Study, from_runs: pd.DataFrame, objective: str) -> pd.DataFrame:
    """One row per trial: number, state, objective value (``value``), its rank among the
    complete trials (1 = the study's best), the trial run's validation and test accuracy
    (reported), seconds, searched parameters; ``attrs["notes"]`` says what selected."""
    df = study.trials_dataframe(attrs=("number", "state", "value", "duration", "params"))
    df["duration"] = df["duration"].dt.total_seconds()
    df = df.rename(columns={"duration": "duration_s"})
    extra = [c for c in ("val_acc", "test_acc_reported") if c in from_runs]
    if extra:
        df = df.merge(from_runs[["trial", *extra]].rename(columns={"trial": "number"}),
                      on="number", how="left")
        df = df[["number", "state", "value", *extra,
                 *[c for c in df.columns if c not in ("number", "state", "value", *extra)]]]
    maximize = len(study.directions) == 1 and study.direction.name == "MAXIMIZE"
    return _rank_and_notes(df, "value", objective, maximize)


def _importances(study: optuna.Study) -> tuple[pd.DataFrame, object]:
    """fANOVA importances over the complete trials with a fixed seed (Optuna's default
    evaluator draws its random forest afresh each call), and the evaluator for the plot."""
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    evaluator = FanovaImportanceEvaluator(seed=0)
    imp = get_param_importances(study, evaluator=evaluator)
    return pd.DataFrame({"param": list(imp), "importance": list(imp.values())}), evaluator


def draw(tables: RunTables, out: Path) -> list[Drawn]:
    """History, importances and λ slice of the (latest) Optuna sweep in the selection."""
    runs = tables.runs
    if "tags.optuna_trial" not in runs or runs["tags.optuna_trial"].isna().all():
        raise Skipped("no Optuna trial runs (tag optuna_trial)")
    trials = trials_from_runs(runs)
    objective = trials.columns[2]
    drawn: list[Drawn] = []
    parent_ids = runs.loc[runs["tags.optuna_trial"].notna(), "parent_run_id"].dropna()
    parents = tables.parents[tables.parents["run_id"].isin(set(parent_ids))] \
        if not tables.parents.empty else tables.parents
    study = None
    if not parents.empty:
        study = load_study(tables, parents.sort_values("start_time").iloc[-1])
    if study is not None:
        import optuna.visualization.matplotlib as ovm

        label = _objective_label(objective)
        where = f"study '{study.study_name}', {len(study.trials)} trials"
        drawn.append(Drawn(NAMES[0], _optuna_figure(
            ovm.plot_optimization_history, NAMES[0], out,
            f"Optuna optimisation history of {objective} ({where})", "trial", label,
            study=study), {"table6_optuna_trials": _trials_table(study, trials, objective)}))
        importances = None
        try:
            importances, evaluator = _importances(study)
            drawn.append(Drawn(NAMES[1], _optuna_figure(
                ovm.plot_param_importances, NAMES[1], out,
                f"Optuna parameter importances for {objective} (fANOVA, seed 0; {where})",
                study=study, evaluator=evaluator),
                               {"table6b_optuna_importances": importances}))
        except Exception as err:  # noqa: BLE001 - e.g. fewer than 2 complete trials
            drawn.append(Drawn(NAMES[1], [], note=f"skipped: {err}"))
        if SB_LAMBDA_PARAM in {p for t in study.trials for p in t.params}:
            others = [] if importances is None else \
                [p for p in importances["param"] if p != SB_LAMBDA_PARAM]
            color_by = others[0] if others else None
            colour = f"colour: {color_by}, the most important other parameter" if color_by \
                else "colour: trial"
            # a point per complete trial: the title counts them, or 12 points read as 20
            complete = sum(t.state.name == "COMPLETE" for t in study.trials)
            drawn.append(Drawn(NAMES[2], _slice_coloured(
                study, color_by, label, out,
                f"Optuna slice: {objective} against λ (study '{study.study_name}', {complete} "
                f"complete of {len(study.trials)} trials)\n{colour}")))
        else:
            drawn.append(Drawn(NAMES[2], [], note=f"skipped: {SB_LAMBDA_PARAM} is not searched"))
        return drawn
    maximize = not objective.endswith("loss")
    drawn.append(Drawn(NAMES[0], _history_from_runs(trials, objective, out),
                       {"table6_optuna_trials": _rank_and_notes(trials, objective, objective,
                                                                maximize)},
                       note="study not found: drawn from the MLflow child runs"))
    drawn.append(Drawn(NAMES[1], [], note="skipped: the Optuna study could not be opened "
                       "(importances need its storage)"))
    if trials["sb_lambda"].nunique() > 1:
        drawn.append(Drawn(NAMES[2], _slice_from_runs(trials, objective, out)))
    else:
        drawn.append(Drawn(NAMES[2], [], note=f"skipped: {SB_LAMBDA_PARAM} was not searched"))
    return drawn
