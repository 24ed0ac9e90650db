"""Runs of one MLflow experiment (optionally one sweep) as two tidy pandas tables.

``load_runs(uri, experiment, sweep=None)`` returns a :class:`RunTables`:

* ``runs``: one row per job run (sweep parent runs are kept apart in ``parents``) with the
  columns ``run_id``, ``run_name``, ``status``, ``start_time``, ``end_time``,
  ``parent_run_id``, ``sweep`` (the parent's name), every param as ``params.<key>``, every
  final (latest) metric as ``metrics.<key>``, every tag as ``tags.<key>``, and typed
  convenience columns ``model``, ``sb_lambda``, ``depth``, ``dim``, ``n_iter``, ``seed``,
  ``dataset``, ``acc`` (final test accuracy in %: ``final_test_acc``, else ``test_acc``),
  ``val_acc`` (final validation accuracy in %: ``final_val_acc``, else ``val_acc``; NaN for a
  run without a validation split, e.g. one logged before ``data.val_fraction`` defaulted to
  0.1), ``n_test`` (test images the accuracy was measured on: the ``n_test`` metric or param;
  NaN when the run did not log it) and ``objective`` (the metric its sweep optimised).

  Selection and reporting: every choice made from these runs (a "best λ", an Optuna study's
  best trial) uses ``val_acc`` (the sweep's ``objective``); ``acc`` is measured once per run
  and only reported.
* ``epochs``: the per-epoch metrics as a long table ``run_id, epoch, metric, value`` (epoch is
  the MLflow step).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path

import pandas as pd

from tracking.client import resolve_tracking_uri
from tracking.parent_run import PARENT_TAG
from tracking.run_store import RunRecord, RunStore

EPOCH_COLUMNS = ["run_id", "epoch", "metric", "value"]
# typed columns derived from the flat params (sweep/task.py flat_params)
_TYPED = {"sb_lambda": ("model.sb_lambda", float), "depth": ("model.depth", int),
          "dim": ("model.dim", int), "n_iter": ("model.n_iter", int), "seed": ("seed", int)}


class NoRunsError(RuntimeError):
    """The store, experiment or sweep holds nothing to analyse; the message says why."""


@dataclass
class RunTables:
    """Everything the figures need: job runs, their per-epoch metrics and the sweep parents."""

    runs: pd.DataFrame
    epochs: pd.DataFrame
    parents: pd.DataFrame = field(default_factory=pd.DataFrame)
    tracking_uri: str = ""
    experiment: str = ""
    experiment_id: str = ""

    def history(self, metric: str | Iterable[str]) -> pd.DataFrame:
        """Per-epoch rows of ``metric`` (a name, a glob such as ``symmetry/b*/token/cos``, or a
        list of them) joined with the run's typed columns."""
        patterns = [metric] if isinstance(metric, str) else list(metric)
        keep = self.epochs["metric"].map(lambda m: any(fnmatch(m, p) for p in patterns))
        cols = ["run_id", "run_name", "model", "variant", "sb_lambda", "depth", "dim", "n_iter",
                "seed"]
        cols = [c for c in cols if c in self.runs.columns]
        return self.epochs[keep].merge(self.runs[cols], on="run_id", how="inner")


def check_store(tracking_uri: str) -> None:
    """Fail clearly on a SQLite URI whose database file does not exist (instead of silently
    creating an empty store)."""
    prefix = "sqlite:///"
    if tracking_uri.startswith(prefix):
        path = Path(tracking_uri[len(prefix):])
        if not path.exists():
            raise NoRunsError(f"no MLflow store at {tracking_uri}: {path} does not exist. Run a "
                              "sweep first (python sweep/run.py -m ...) or pass --tracking-uri")


def _run_row(run: RunRecord) -> dict[str, object]:
    row: dict[str, object] = {
        "run_id": run.run_id,
        "run_name": run.run_name,
        "status": run.status,
        "start_time": pd.to_datetime(run.start_time, unit="ms") if run.start_time else None,
        "end_time": pd.to_datetime(run.end_time, unit="ms") if run.end_time else None,
        "parent_run_id": run.tags.get(PARENT_TAG),
    }
    row.update({f"params.{k}": v for k, v in run.params.items()})
    row.update({f"metrics.{k}": v for k, v in run.metrics.items()})
    row.update({f"tags.{k}": v for k, v in run.tags.items()})
    return row


def _parse(value: object, kind: Callable[[str], object]) -> object:
    try:
        return kind(float(value)) if kind is int else kind(value)  # "4" and "4.0" both work
    except (TypeError, ValueError):
        return None


def variant_label(model: str, sb_lambda: float | None) -> str:
    """'sym', 'para', 'vanilla' or 'asym λ=1e-4' (a model sb_lambda applies to, per the variant
    table in models/variants.py, carries its sb_lambda)."""
    from models import VARIANTS, format_float

    variant = VARIANTS.get(model) if isinstance(model, str) else None
    if variant is not None and variant.has_lambda and sb_lambda is not None \
            and sb_lambda == sb_lambda:
        return f"{model} λ={format_float(float(sb_lambda))}"
    return str(model)


def add_typed_columns(runs: pd.DataFrame) -> pd.DataFrame:
    """Add the typed convenience columns (``model``, ``sb_lambda``, ..., ``acc``, ``val_acc``,
    ``n_test``, ``objective``, ``variant``) to a run table with ``params.*`` / ``metrics.*`` /
    ``tags.*`` columns (load_runs does; also for run tables built by hand); returns it."""
    def col(name: str) -> pd.Series:
        return runs[name] if name in runs.columns else pd.Series([None] * len(runs),
                                                                 index=runs.index, dtype=object)

    model = col("params.model.name").fillna(col("tags.model"))
    runs["model"] = model
    for name, (param, kind) in _TYPED.items():
        values = col(f"params.{param}").map(lambda v, k=kind: _parse(v, k))
        runs[name] = pd.to_numeric(values, errors="coerce")
    runs["dataset"] = col("params.data.name")
    acc = pd.to_numeric(col("metrics.final_test_acc"), errors="coerce")
    runs["acc"] = acc.fillna(pd.to_numeric(col("metrics.test_acc"), errors="coerce"))
    val = pd.to_numeric(col("metrics.final_val_acc"), errors="coerce")
    runs["val_acc"] = val.fillna(pd.to_numeric(col("metrics.val_acc"), errors="coerce"))
    n_test = pd.to_numeric(col("metrics.n_test"), errors="coerce")
    runs["n_test"] = n_test.fillna(pd.to_numeric(col("params.n_test"), errors="coerce"))
    runs["objective"] = col("params.objective")
    pairs = zip(runs["model"], runs["sb_lambda"], strict=True)
    runs["variant"] = [variant_label(m, sb_lambda) for m, sb_lambda in pairs]
    return runs


def find_parent(parents: pd.DataFrame, sweep: str) -> pd.Series:
    """The sweep parent run named ``sweep`` (the latest one when a name was reused) or with
    run id ``sweep``."""
    if parents.empty:
        raise NoRunsError(f"--sweep {sweep!r}: the experiment has no sweep parent runs "
                          "(tag sweep=true)")
    by_id = parents[parents["run_id"] == sweep]
    if not by_id.empty:
        return by_id.iloc[0]
    by_name = parents[parents["run_name"] == sweep].sort_values("start_time")
    if by_name.empty:
        names = sorted(set(parents["run_name"]))
        raise NoRunsError(f"--sweep {sweep!r} names no sweep parent run (by name or id); "
                          f"sweeps in this experiment: {names}")
    return by_name.iloc[-1]


def _histories(store: RunStore, runs: pd.DataFrame,
               metric_filter: Callable[[str], bool]) -> pd.DataFrame:
    # system/* are MLflow's system metrics, whose steps are samples, not epochs
    jobs = [(rid, key) for rid, keys in zip(runs["run_id"], runs["_metric_keys"], strict=False)
            for key in keys if metric_filter(key) and not key.startswith("system/")]

    def fetch(job: tuple[str, str]) -> list[tuple[str, int, str, float]]:
        rid, key = job
        return [(rid, step, key, value) for step, value in store.metric_history(rid, key)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        rows = [r for chunk in pool.map(fetch, jobs) for r in chunk]
    epochs = pd.DataFrame(rows, columns=EPOCH_COLUMNS)
    # a resumed run may have logged an epoch twice: keep the last value
    epochs = epochs.drop_duplicates(["run_id", "epoch", "metric"], keep="last")
    return epochs.sort_values(["run_id", "metric", "epoch"]).reset_index(drop=True)


def load_runs(tracking_uri: str | None, experiment: str, sweep: str | None = None,
              metrics: Iterable[str] | None = None) -> RunTables:
    """Read an experiment's runs (or one sweep's: ``sweep`` = parent run name or id).

    ``tracking_uri`` None means the project's default (``sqlite:///<cwd>/mlflow.db``);
    ``metrics`` are glob patterns of the per-epoch metrics to read (None: all of them).
    Raises :class:`NoRunsError` on a missing store, an unknown experiment or no runs.
    """
    uri = resolve_tracking_uri(tracking_uri, Path.cwd())
    check_store(uri)
    store = RunStore(uri)
    exp_id = store.experiment_id(experiment)
    if exp_id is None:
        names = store.experiment_names()
        raise NoRunsError(f"no experiment {experiment!r} at {uri}; experiments there: "
                          f"{names or 'none (the store is empty)'}")
    all_runs = store.runs(exp_id)
    if not all_runs:
        raise NoRunsError(f"experiment {experiment!r} at {uri} has no runs")
    rows = [_run_row(r) for r in all_runs]
    keys = [sorted(r.metrics) for r in all_runs]
    table = pd.DataFrame(rows)
    table["_metric_keys"] = keys
    is_parent = table.get("tags.sweep", pd.Series(index=table.index, dtype=object)) == "true"
    parents = table[is_parent].drop(columns="_metric_keys").reset_index(drop=True)
    runs = table[~is_parent].reset_index(drop=True)
    if sweep is not None:
        parent = find_parent(parents, sweep)
        runs = runs[runs["parent_run_id"] == parent["run_id"]].reset_index(drop=True)
        parents = parents[parents["run_id"] == parent["run_id"]].reset_index(drop=True)
        if runs.empty:
            raise NoRunsError(f"sweep {parent['run_name']!r} ({parent['run_id']}) has no runs")
    if runs.empty:
        raise NoRunsError(f"experiment {experiment!r} at {uri} has only sweep parent runs, "
                          "no job runs")
    names = {} if parents.empty else dict(zip(parents["run_id"], parents["run_name"],
                                              strict=True))
    runs["sweep"] = runs["parent_run_id"].map(names)
    runs = add_typed_columns(runs)
    patterns = list(metrics) if metrics is not None else None
    wanted = (lambda k: True) if patterns is None else (
        lambda k: any(fnmatch(k, p) for p in patterns))
    epochs = _histories(store, runs, wanted)
    runs = runs.drop(columns="_metric_keys")
    return RunTables(runs=runs, epochs=epochs, parents=parents, tracking_uri=uri,
                     experiment=experiment, experiment_id=exp_id)
