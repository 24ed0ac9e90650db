"""The Tracker implementation for MLflow: one job's run, through a TrackingClient (no global
"active run" state, so several runs in one process — Hydra's basic launcher — never interfere;
every call is retried with back-off, tracking/client.py)."""

from __future__ import annotations

import time

from mlflow.entities import Metric, Param, RunTag

from tracking.client import open_client
from tracking.parent_run import PARENT_TAG
from tracking.retry import DEFAULT_BACKOFF_S, DEFAULT_RETRIES

MAX_PARAMS_PER_CALL = 100  # MLflow's limit per log_batch
MAX_PARAM_LENGTH = 6000


class MlflowTracker:
    """Logs one run to MLflow; every call is retried with back-off."""

    def __init__(self, uri: str, experiment: str, retries: int = DEFAULT_RETRIES,
                 retry_backoff_s: float = DEFAULT_BACKOFF_S,
                 description: str | None = None) -> None:
        self.uri = uri
        self.experiment = experiment
        self.description = description
        self.client = open_client(uri, retries, retry_backoff_s)
        self.run_id: str | None = None

    def start(self, *, run_name: str, params: dict[str, str], tags: dict[str, str],
              resume_run_id: str | None = None, parent_run_id: str | None = None) -> str:
        call = self.client.call
        if resume_run_id is not None:
            self.run_id = resume_run_id
            call("reopen run", lambda c: c.update_run(resume_run_id, "RUNNING"))
            self.set_tags(tags)
            # an interruption (SIGTERM, requeue) left an `error` tag: the run goes on
            run = call("get run", lambda c: c.get_run(resume_run_id))
            if "error" in run.data.tags:
                call("clear error tag", lambda c: c.delete_tag(resume_run_id, "error"))
            return resume_run_id
        exp_id = self.client.experiment_id(self.experiment, self.description)
        run_tags = dict(tags)
        if parent_run_id:
            run_tags[PARENT_TAG] = parent_run_id
        run = call("create run", lambda c: c.create_run(exp_id, run_name=run_name,
                                                        tags=run_tags))
        self.run_id = run.info.run_id
        items = [Param(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in sorted(params.items())]
        for i in range(0, len(items), MAX_PARAMS_PER_CALL):
            chunk = items[i:i + MAX_PARAMS_PER_CALL]
            call("log params", lambda c, p=chunk: c.log_batch(self.run_id, params=p))
        return self.run_id

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        self.client.call("log metrics", lambda c: c.log_batch(self.run_id, metrics=batch))

    def last_step(self, key: str) -> int | None:
        hist = self.client.call("metric history",
                                lambda c: c.get_metric_history(self.run_id, key))
        return max((m.step for m in hist), default=None)

    def set_tags(self, tags: dict[str, str]) -> None:
        batch = [RunTag(k, str(v)) for k, v in tags.items()]
        self.client.call("set tags", lambda c: c.log_batch(self.run_id, tags=batch))

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None:
        self.client.call("log artifact",
                         lambda c: c.log_artifact(self.run_id, path, artifact_path))

    def finish(self, status: str) -> None:
        if self.run_id is not None:
            self.client.call("set status", lambda c: c.set_terminated(self.run_id, status))
