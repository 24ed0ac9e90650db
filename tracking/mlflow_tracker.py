"""The Tracker implementation for MLflow: one job's run, through a TrackingClient (no global
"active run" state, so several runs in one process — Hydra's basic launcher — never interfere;
every call is retried with back-off, tracking/client.py).

Reopening a run (a resumed job) first checks that it is this job's: it must exist, live in the
tracker's experiment and carry the caller's values of the tags that identify it
(``match_tags``, e.g. the job's config fingerprint); otherwise ``RunMismatch`` is raised before
anything is written to it. A run without such a tag (logged before the tag existed) is
reopened with a warning, and gets the tag.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tracking.client import open_client
from tracking.parent_run import PARENT_TAG
from tracking.retry import DEFAULT_BACKOFF_S, DEFAULT_RETRIES

# MLflow is imported by the methods that use it (after ``open_client`` has imported it), so
# that importing this module (sweep/validate.py reads the constructor's keywords) costs no
# MLflow import
if TYPE_CHECKING:
    from mlflow.entities import Run

MAX_PARAMS_PER_CALL = 100  # MLflow's limit per log_batch
MAX_PARAM_LENGTH = 6000
# what get_run answers for a run id the store does not hold (REST and SQL stores)
_NO_SUCH_RUN = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")
log = logging.getLogger(__name__)


class RunMismatch(RuntimeError):
    """The run a job would reopen is not its own: missing, in another experiment, or tagged
    with other values of the tags that identify it. Never retried."""

    user_error = True  # the user's to fix: shown as one line (sweep/user_errors.py)


class MlflowTracker:
    """Logs one run to MLflow; every call is retried with back-off."""

    def __init__(self, uri: str, experiment: str, retries: int = DEFAULT_RETRIES,
                 retry_backoff_s: float = DEFAULT_BACKOFF_S,
                 description: str | None = None, artifact_location: str | None = None) -> None:
        self.uri = uri
        self.experiment = experiment
        self.description = description
        self.artifact_location = artifact_location  # of a new experiment; None: the rule
        self.client = open_client(uri, retries, retry_backoff_s)
        self.run_id: str | None = None

    def start(self, *, run_name: str, params: dict[str, str], tags: dict[str, str],
              resume_run_id: str | None = None, parent_run_id: str | None = None,
              match_tags: Sequence[str] = ()) -> str:
        """Create the run, or reopen ``resume_run_id`` (status RUNNING, ``tags`` set) after
        checking that it exists in this experiment and has ``tags[k]`` for each ``k`` in
        ``match_tags`` (RunMismatch otherwise, nothing written)."""
        call = self.client.call
        if resume_run_id is not None:
            run = self._run_to_reopen(resume_run_id, {k: tags[k] for k in match_tags})
            self.run_id = resume_run_id
            call("reopen run", lambda c: c.update_run(resume_run_id, "RUNNING"))
            self.set_tags(tags)
            # an interruption (SIGTERM, requeue) left an `error` tag: the run goes on
            if "error" in run.data.tags:
                call("clear error tag", lambda c: c.delete_tag(resume_run_id, "error"))
            return resume_run_id
        exp_id = self.client.experiment_id(self.experiment, self.description,
                                           self.artifact_location)
        run_tags = dict(tags)
        if parent_run_id:
            run_tags[PARENT_TAG] = parent_run_id
        run = call("create run", lambda c: c.create_run(exp_id, run_name=run_name,
                                                        tags=run_tags))
        self.run_id = run.info.run_id
        from mlflow.entities import Param

        items = [Param(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in sorted(params.items())]
        for i in range(0, len(items), MAX_PARAMS_PER_CALL):
            chunk = items[i:i + MAX_PARAMS_PER_CALL]
            call("log params", lambda c, p=chunk: c.log_batch(self.run_id, params=p))
        return self.run_id

    def _run_to_reopen(self, run_id: str, expected: dict[str, str]) -> Run:
        """Run ``run_id`` if it is this job's to reopen (see the module doc), else RunMismatch."""
        from mlflow.exceptions import MlflowException

        def fetch(c) -> tuple[Run | None, str | None]:
            try:
                run = c.get_run(run_id)
            except MlflowException as err:
                if err.error_code in _NO_SUCH_RUN:
                    return None, None
                raise
            return run, c.get_experiment(run.info.experiment_id).name

        run, experiment = self.client.call("get run", fetch)
        if run is None or run.info.lifecycle_stage == "deleted":
            raise RunMismatch(f"MLflow run {run_id}, which "
                              f"{'was deleted' if run else 'does not exist at tracking.uri'}")
        if experiment != self.experiment:
            raise RunMismatch(f"MLflow run {run_id}, which is in experiment '{experiment}', not "
                              f"in tracking.experiment='{self.experiment}'")
        for key, value in expected.items():
            theirs = run.data.tags.get(key)
            if theirs is None:
                log.warning("MLflow run %s has no %s tag (logged by an older version): "
                            "reopening it unchecked", run_id, key)
            elif theirs != value:
                raise RunMismatch(f"MLflow run {run_id}, whose {key} is {theirs}, not this "
                                  f"job's {value}")
        return run

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        self.client.call("log metrics", lambda c: c.log_batch(self.run_id, metrics=batch))

    def last_step(self, key: str) -> int | None:
        hist = self.client.call("metric history",
                                lambda c: c.get_metric_history(self.run_id, key))
        return max((m.step for m in hist), default=None)

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        batch = [RunTag(k, str(v)) for k, v in tags.items()]
        self.client.call("set tags", lambda c: c.log_batch(self.run_id, tags=batch))

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None:
        self.client.call("log artifact",
                         lambda c: c.log_artifact(self.run_id, path, artifact_path))

    def finish(self, status: str) -> None:
        if self.run_id is not None:
            self.client.call("set status", lambda c: c.set_terminated(self.run_id, status))
