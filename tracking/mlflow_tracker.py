"""The Tracker implementation for MLflow, through MlflowClient (no global "active run" state,
so several runs in one process — Hydra's basic launcher — never interfere)."""

from __future__ import annotations

import time
from pathlib import Path

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from tracking.retry import with_retries

MAX_PARAMS_PER_CALL = 100  # MLflow's limit per log_batch
MAX_PARAM_LENGTH = 6000


def default_tracking_uri(base_dir: str | Path) -> str:
    """MLflow 3's embedded default, made absolute: sqlite:///<base_dir>/mlflow.db."""
    return f"sqlite:///{Path(base_dir).resolve() / 'mlflow.db'}"


def resolve_tracking_uri(uri: str | None, base_dir: str | Path) -> str:
    return default_tracking_uri(base_dir) if uri in (None, "") else str(uri)


def get_or_create_experiment(client: MlflowClient, name: str,
                             description: str | None = None) -> str:
    """Experiment id for ``name``; creation races between concurrent jobs are tolerated."""
    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            tags = {"mlflow.note.content": description} if description else None
            return client.create_experiment(name, tags=tags)
        except Exception:  # noqa: BLE001 - another process created it first
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    return exp.experiment_id


class MlflowTracker:
    """Logs one run to MLflow; every call is retried with back-off."""

    def __init__(self, uri: str, experiment: str, retries: int = 6,
                 retry_backoff_s: float = 1.0, description: str | None = None) -> None:
        self.uri = uri
        self.experiment = experiment
        self.retries = retries
        self.backoff = retry_backoff_s
        self.description = description
        self.client = MlflowClient(uri)
        self.run_id: str | None = None

    def _call(self, what: str, fn):
        return with_retries(fn, what, self.retries, self.backoff)

    def start(self, *, run_name: str, params: dict[str, str], tags: dict[str, str],
              resume_run_id: str | None = None, parent_run_id: str | None = None) -> str:
        if resume_run_id is not None:
            self.run_id = resume_run_id
            self._call("reopen run", lambda: self.client.update_run(resume_run_id, "RUNNING"))
            self.set_tags(tags)
            return resume_run_id
        exp_id = self._call("experiment", lambda: get_or_create_experiment(
            self.client, self.experiment, self.description))
        run_tags = dict(tags)
        if parent_run_id:
            run_tags["mlflow.parentRunId"] = parent_run_id
        run = self._call("create run", lambda: self.client.create_run(
            exp_id, run_name=run_name, tags=run_tags))
        self.run_id = run.info.run_id
        items = [Param(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in sorted(params.items())]
        for i in range(0, len(items), MAX_PARAMS_PER_CALL):
            chunk = items[i:i + MAX_PARAMS_PER_CALL]
            self._call("log params", lambda c=chunk: self.client.log_batch(self.run_id, params=c))
        return self.run_id

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        self._call("log metrics", lambda: self.client.log_batch(self.run_id, metrics=batch))

    def last_step(self, key: str) -> int | None:
        hist = self._call("metric history",
                          lambda: self.client.get_metric_history(self.run_id, key))
        return max((m.step for m in hist), default=None)

    def set_tags(self, tags: dict[str, str]) -> None:
        batch = [RunTag(k, str(v)) for k, v in tags.items()]
        self._call("set tags", lambda: self.client.log_batch(self.run_id, tags=batch))

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None:
        self._call("log artifact",
                   lambda: self.client.log_artifact(self.run_id, path, artifact_path))

    def finish(self, status: str) -> None:
        if self.run_id is not None:
            self._call("set status", lambda: self.client.set_terminated(self.run_id, status))
