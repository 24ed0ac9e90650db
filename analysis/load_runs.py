"""Runs of one MLflow experiment (optionally one sweep) as two tidy pandas tables.

``load_runs(uri, experiment, sweep=None)`` returns a :class:`RunTables`:

* ``runs``: one row per job run (sweep parent runs are kept apart in ``parents``) with the
  columns ``run_id``, ``run_name``, ``status``, ``start_time``, ``end_time``,
  ``parent_run_id``, ``sweep`` (the parent's name), every param as ``params.<key>``, every
  final (latest) metric as ``metrics.<key>``, every tag as ``tags.<key>``, and typed
  convenience columns ``model``, ``lam``, ``depth``, ``dim``, ``n_iter``, ``seed``,
  ``dataset`` and ``acc`` (final test accuracy in %: ``final_test_acc``, else ``test_acc``).
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
from mlflow.entities import Run, ViewType
from mlflow.tracking import MlflowClient

from tracking.mlflow_tracker import resolve_tracking_uri

PARENT_TAG = "mlflow.parentRunId"
SWEEP_TAG = "sweep"
EPOCH_COLUMNS = ["run_id", "epoch", "metric", "value"]
# typed columns derived from the flat params (sweep/task.py flat_params)
_TYPED = {"lam": ("model.sb_lambda", float), "depth": ("model.depth", int),
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
        cols = ["run_id", "run_name", "model", "variant", "lam", "depth", "dim", "n_iter", "seed"]
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


def _all_runs(client: MlflowClient, exp_id: str, filter_string: str = "") -> list[Run]:
    out: list[Run] = []
    token = None
    while True:
        page = client.search_runs([exp_id], filter_string, ViewType.ACTIVE_ONLY,
                                  max_results=1000, page_token=token)
        out.extend(page)
        token = page.token
        if not token:
            return out


def _run_row(run: Run) -> dict[str, object]:
    info, data = run.info, run.data
    row: dict[str, object] = {
        "run_id": info.run_id,
        "run_name": info.run_name,
        "status": info.status,
        "start_time": pd.to_datetime(info.start_time, unit="ms") if info.start_time else None,
        "end_time": pd.to_datetime(info.end_time, unit="ms") if info.end_time else None,
        "parent_run_id": data.tags.get(PARENT_TAG),
    }
    row.update({f"params.{k}": v for k, v in data.params.items()})
    row.update({f"metrics.{k}": v for k, v in data.metrics.items()})
    row.update({f"tags.{k}": v for k, v in data.tags.items()})
    return row


def _parse(value: object, kind: Callable[[str], object]) -> object:
    try:
        return kind(float(value)) if kind is int else kind(value)  # "4" and "4.0" both work
    except (TypeError, ValueError):
        return None


def variant_label(model: str, lam: float | None) -> str:
    """'sym', 'para', 'vanilla' or 'asym λ=1e-4' (the asym label carries its lam)."""
    if model == "asym" and lam is not None and lam == lam:
        from sweep.run_name import format_float

        return f"asym λ={format_float(float(lam))}"
    return str(model)


def _add_typed_columns(runs: pd.DataFrame) -> pd.DataFrame:
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
    pairs = zip(runs["model"], runs["lam"], strict=True)
    runs["variant"] = [variant_label(m, lam) for m, lam in pairs]
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


def _histories(client: MlflowClient, runs: pd.DataFrame,
               metric_filter: Callable[[str], bool]) -> pd.DataFrame:
    jobs = [(rid, key) for rid, keys in zip(runs["run_id"], runs["_metric_keys"], strict=False)
            for key in keys if metric_filter(key)]

    def fetch(job: tuple[str, str]) -> list[tuple[str, int, str, float]]:
        rid, key = job
        return [(rid, m.step, key, m.value) for m in client.get_metric_history(rid, key)]

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
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        names = sorted(e.name for e in client.search_experiments())
        raise NoRunsError(f"no experiment {experiment!r} at {uri}; experiments there: "
                          f"{names or 'none (the store is empty)'}")
    all_runs = _all_runs(client, exp.experiment_id)
    if not all_runs:
        raise NoRunsError(f"experiment {experiment!r} at {uri} has no runs")
    rows = [_run_row(r) for r in all_runs]
    keys = [sorted(r.data.metrics) for r in all_runs]
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
    runs = _add_typed_columns(runs)
    patterns = list(metrics) if metrics is not None else None
    wanted = (lambda k: True) if patterns is None else (
        lambda k: any(fnmatch(k, p) for p in patterns))
    epochs = _histories(client, runs, wanted)
    runs = runs.drop(columns="_metric_keys")
    return RunTables(runs=runs, epochs=epochs, parents=parents, tracking_uri=uri,
                     experiment=experiment, experiment_id=exp.experiment_id)
