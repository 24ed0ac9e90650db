"""Figure 6: an Optuna study: optimisation history, parameter importances and the λ slice.

The study is found from the sweep's parent run: ``optimization_results.yaml`` (storage URL and
study name, written by hydra_plugins/mixerlab_optuna_sweeper) in the parent's ``sweep_dir``
tag or its ``optuna/`` artifacts, else the default journal ``<sweep_dir>/optuna_journal.log``.
When the study cannot be opened, the history and the λ slice are drawn from the child runs
(tag ``optuna_trial``, the final value of the ``objective`` param's metric) and the
importances are skipped.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import pandas as pd
import yaml

from analysis.figure_result import Drawn, Skipped
from analysis.load_runs import RunTables
from analysis.style import (
    LAMBDA_LABEL,
    WIDE,
    apply_style,
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
    out = df[["trial", "state", "value", "sb_lambda", "run_name"]].sort_values("trial")
    return out.rename(columns={"value": objective}).reset_index(drop=True)


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
        if fig.get_suptitle():  # some optuna plots title the figure, others the axes
            fig.suptitle("")
        for loc in ("left", "right"):  # optuna titles some plots on the left
            axes[0].set_title("", loc=loc)
        axes[0].set_title(title, fontweight="bold", fontsize=10.5)
        legend = axes[0].get_legend()
        if legend is not None:
            handles, labels = axes[0].get_legend_handles_labels()
            if len(handles) > 1:
                axes[0].legend(handles, labels, loc="best")
            else:
                legend.remove()
        try:
            fig.tight_layout()
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
    ax.set_title("Optuna optimisation history (from the MLflow child runs)")
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
    ax.set_title("Optuna slice: objective against λ (from the MLflow child runs)")
    return save_figure(fig, out, NAMES[2])


def _trials_table(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, objective value, seconds, searched parameters."""
    df = study.trials_dataframe(attrs=("number", "state", "value", "duration", "params"))
    df["duration"] = df["duration"].dt.total_seconds()
    return df.rename(columns={"duration": "duration_s"})


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
            f"Optuna optimisation history ({where})", "trial", label, study=study),
                           {"table6_optuna_trials": _trials_table(study)}))
        try:
            importances, evaluator = _importances(study)
            drawn.append(Drawn(NAMES[1], _optuna_figure(
                ovm.plot_param_importances, NAMES[1], out,
                f"Optuna parameter importances (fANOVA, seed 0; {where})", study=study,
                evaluator=evaluator), {"table6b_optuna_importances": importances}))
        except Exception as err:  # noqa: BLE001 - e.g. fewer than 2 complete trials
            drawn.append(Drawn(NAMES[1], [], note=f"skipped: {err}"))
        if SB_LAMBDA_PARAM in {p for t in study.trials for p in t.params}:
            drawn.append(Drawn(NAMES[2], _optuna_figure(
                ovm.plot_slice, NAMES[2], out, f"Optuna slice: objective against λ ({where})",
                LAMBDA_LABEL, label, study=study, params=[SB_LAMBDA_PARAM])))
        else:
            drawn.append(Drawn(NAMES[2], [], note=f"skipped: {SB_LAMBDA_PARAM} is not searched"))
        return drawn
    drawn.append(Drawn(NAMES[0], _history_from_runs(trials, objective, out),
                       {"table6_optuna_trials": trials},
                       note="study not found: drawn from the MLflow child runs"))
    drawn.append(Drawn(NAMES[1], [], note="skipped: the Optuna study could not be opened "
                       "(importances need its storage)"))
    if trials["sb_lambda"].nunique() > 1:
        drawn.append(Drawn(NAMES[2], _slice_from_runs(trials, objective, out)))
    else:
        drawn.append(Drawn(NAMES[2], [], note=f"skipped: {SB_LAMBDA_PARAM} was not searched"))
    return drawn
