"""The Tracker implementation for MLflow, through MlflowClient (no global "active run" state,
so several runs in one process — Hydra's basic launcher — never interfere)."""

from __future__ import annotations

import fcntl
import os
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


def use_own_retries() -> None:
    """Make ``tracking.retries`` / ``tracking.retry_backoff_s`` the retry policy for HTTP
    servers: MLflow's own client retries each request 7 times with exponential back-off (about
    4 minutes per call against a server that is down) before our retry loop even sees the
    error. Unless the user set MLFLOW_HTTP_REQUEST_MAX_RETRIES, it is set to 0 here."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")


def make_client(uri: str) -> MlflowClient:
    """An MlflowClient for ``uri``. Creating one on a SQLite file creates or migrates its schema
    (MLflow runs alembic migrations on first use): concurrent jobs doing that on a new file
    race and fail ("Online migration expected to match one row", "table ... already exists").
    For ``sqlite:///`` URIs the creation is serialised across processes with an exclusive
    ``flock`` on the database's folder, so the first job creates the schema and the others
    find it ready."""
    use_own_retries()
    if not uri.startswith("sqlite:///"):
        return MlflowClient(uri)
    folder = Path(uri[len("sqlite:///"):]).parent
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return MlflowClient(uri)
    finally:
        os.close(fd)  # releases the lock


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
        self.client = with_retries(lambda: make_client(uri), "open the tracking store", retries,
                                   retry_backoff_s)
        self.run_id: str | None = None

    def _call(self, what: str, fn):
        return with_retries(fn, what, self.retries, self.backoff)

    def start(self, *, run_name: str, params: dict[str, str], tags: dict[str, str],
              resume_run_id: str | None = None, parent_run_id: str | None = None) -> str:
        if resume_run_id is not None:
            self.run_id = resume_run_id
            self._call("reopen run", lambda: self.client.update_run(resume_run_id, "RUNNING"))
            self.set_tags(tags)
            # an interruption (SIGTERM, requeue) left an `error` tag: the run goes on
            run = self._call("get run", lambda: self.client.get_run(resume_run_id))
            if "error" in run.data.tags:
                self._call("clear error tag",
                           lambda: self.client.delete_tag(resume_run_id, "error"))
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
