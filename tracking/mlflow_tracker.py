"""The Tracker implementation for MLflow: one job's run, through a TrackingClient (no global
"active run" state, so several runs in one process — Hydra's basic launcher — never interfere;
every call is retried with back-off, tracking/client.py).

Reopening a run (a resumed job) first checks that it is this job's: it must exist, live in the
tracker's experiment and carry the caller's values of the tags that identify it
(``match_tags``, e.g. the job's config fingerprint); otherwise ``RunMismatch`` is raised before
anything is written to it. A run without such a tag (logged before the tag existed) is
reopened with a warning, and gets the tag.

Besides params, metrics, tags and artifacts, the run gets what MLflow users expect of a
training run (each in its own module): system metrics while it is open
(``tracking.system_metrics``, tracking/system_metrics.py, stopped before the run is closed),
the dataset as run inputs (``log_dataset``, tracking/dataset_input.py), the trained model as
an ``mlflow.pytorch`` model, optionally registered (``log_model``, tracking/logged_model.py),
and ``mlflow.user`` at creation (the source tags come with the caller's tags,
tracking/source_tags.py).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tracking.client import open_client
from tracking.parent_run import PARENT_TAG
from tracking.retry import DEFAULT_BACKOFF_S, DEFAULT_RETRIES
from tracking.secrets import credentialed
from tracking.source_tags import USER, user
from tracking.system_metrics import SystemMetrics

# MLflow is imported by the methods that use it (after ``open_client`` has imported it), so
# that importing this module (sweep/validate.py reads the constructor's keywords) costs no
# MLflow import
if TYPE_CHECKING:
    import numpy as np
    import torch
    from mlflow.entities import Run

    from tracking.logged_model import LoggedModelInfo

MAX_PARAMS_PER_CALL = 100  # MLflow's limit per log_batch
MAX_PARAM_LENGTH = 6000
# what get_run answers for a run id the store does not hold (REST and SQL stores)
_NO_SUCH_RUN = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")
log = logging.getLogger(__name__)


def settings_errors(system_metrics: object = True, system_metrics_interval_s: object = 10.0,
                    log_model: object = True, register_model: object = None) -> list[str]:
    """One message per invalid value of the tracking keys below (none: all valid)."""
    def number(v: object) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    checks = [
        (isinstance(system_metrics, bool), "system_metrics", system_metrics, "true or false"),
        (number(system_metrics_interval_s) and system_metrics_interval_s > 0,
         "system_metrics_interval_s", system_metrics_interval_s, "a number of seconds > 0"),
        (isinstance(log_model, bool), "log_model", log_model, "true or false"),
        (register_model is None or (isinstance(register_model, str) and register_model.strip()
                                    and "/" not in register_model and ":" not in register_model),
         "register_model", register_model, "null or a model name without '/' or ':'"),
    ]
    return [f"tracking.{key}={value!r} is invalid; valid: {valid}"
            for ok, key, value, valid in checks if not ok]


class RunMismatch(RuntimeError):
    """The run a job would reopen is not its own: missing, in another experiment, or tagged
    with other values of the tags that identify it. Never retried."""

    user_error = True  # the user's to fix: shown as one line (sweep/user_errors.py)


class MlflowTracker:
    """Logs one run to MLflow; every call is retried with back-off."""

    def __init__(self, uri: str, experiment: str, retries: int = DEFAULT_RETRIES,
                 retry_backoff_s: float = DEFAULT_BACKOFF_S,
                 description: str | None = None, artifact_location: str | None = None,
                 system_metrics: bool = True, system_metrics_interval_s: float = 10.0,
                 log_model: bool = True, register_model: str | None = None) -> None:
        """``system_metrics``: sample system metrics every ``system_metrics_interval_s`` while
        the run is open; ``log_model``: ``log_model`` logs the model (else does nothing);
        ``register_model``: the registered model it also becomes a version of (None: not
        registered). ValueError naming each invalid value, before any store is opened."""
        errors = settings_errors(system_metrics, system_metrics_interval_s, log_model,
                                 register_model)
        if errors:
            raise ValueError("; ".join(errors))
        self.uri = uri
        self.experiment = experiment
        self.description = description
        self.artifact_location = artifact_location  # of a new experiment; None: the rule
        self.system_metrics = system_metrics
        self.system_metrics_interval_s = float(system_metrics_interval_s)
        self.log_model_enabled = log_model
        self.register_model = register_model
        self.client = open_client(uri, retries, retry_backoff_s)
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self._source_tags: dict[str, str] = {}  # the run's mlflow.source.* tags
        self._monitor: SystemMetrics | None = None

    def start(self, *, run_name: str, params: dict[str, str], tags: dict[str, str],
              resume_run_id: str | None = None, parent_run_id: str | None = None,
              match_tags: Sequence[str] = ()) -> str:
        """Create the run, or reopen ``resume_run_id`` (status RUNNING, ``tags`` set) after
        checking that it exists in this experiment and has ``tags[k]`` for each ``k`` in
        ``match_tags`` (RunMismatch otherwise, nothing written)."""
        call = self.client.call
        self._source_tags = {k: v for k, v in tags.items() if k.startswith("mlflow.source.")}
        if resume_run_id is not None:
            run = self._run_to_reopen(resume_run_id, {k: tags[k] for k in match_tags})
            self.run_id = resume_run_id
            self.experiment_id = run.info.experiment_id
            call("reopen run", lambda c: c.update_run(resume_run_id, "RUNNING"))
            self.set_tags(tags)
            # an interruption (SIGTERM, requeue) left an `error` tag: the run goes on
            if "error" in run.data.tags:
                call("clear error tag", lambda c: c.delete_tag(resume_run_id, "error"))
            self._start_system_metrics(resume=True)
            return resume_run_id
        exp_id = self.client.experiment_id(self.experiment, self.description,
                                           self.artifact_location)
        run_tags = {USER: user(), **tags}  # mlflow.user: at creation only (immutable)
        if parent_run_id:
            run_tags[PARENT_TAG] = parent_run_id
        run = call("create run", lambda c: c.create_run(exp_id, run_name=run_name,
                                                        tags=run_tags))
        self.run_id = run.info.run_id
        self.experiment_id = exp_id
        from mlflow.entities import Param

        items = [Param(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in sorted(params.items())]
        for i in range(0, len(items), MAX_PARAMS_PER_CALL):
            chunk = items[i:i + MAX_PARAMS_PER_CALL]
            call("log params", lambda c, p=chunk: c.log_batch(self.run_id, params=p))
        self._start_system_metrics(resume=False)
        return self.run_id

    def _start_system_metrics(self, resume: bool) -> None:
        if self.system_metrics and self._monitor is None:
            self._monitor = SystemMetrics(credentialed(self.client.uri), self.run_id,
                                          self.system_metrics_interval_s, resume=resume)

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

    def log_metrics(self, metrics: dict[str, float], step: int,
                    model_id: str | None = None) -> None:
        """All metrics of one step in one call; with ``model_id`` (a model ``log_model``
        logged) they are that model's metrics too (the UI's Models tab)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step, model_id=model_id) for k, v in metrics.items()]
        self.client.call("log metrics", lambda c: c.log_batch(self.run_id, metrics=batch))

    def log_dataset(self, name: str, splits: Mapping[str, tuple[np.ndarray, np.ndarray]],
                    source: str | None = None) -> None:
        """Each split (``train``, ``val``, ``test``: (images, labels)) as a run input, read from
        ``source`` (a folder; None: the code), as tracking/dataset_input.py describes."""
        from tracking.dataset_input import dataset_inputs

        inputs = dataset_inputs(name, splits, source, self._source_tags)
        self.client.call("log dataset", lambda c: c.log_inputs(self.run_id, datasets=inputs))

    def log_model(self, model: torch.nn.Module, example: torch.Tensor, step: int,
                  metadata: Mapping[str, Any]) -> LoggedModelInfo | None:
        """With ``log_model`` on: ``model`` as an ``mlflow.pytorch`` model of the run (form,
        signature, input example: tracking/logged_model.py), from normalised images
        ``example`` (B, C, H, W), linked to the run at ``step`` and registered as
        ``register_model`` when set; None when off. ModelExportError when torch.export
        fails."""
        if not self.log_model_enabled or self.run_id is None:
            return None
        from tracking.logged_model import log_pytorch_model

        return log_pytorch_model(self.client, experiment_id=self.experiment_id,
                                 run_id=self.run_id, model=model, example=example, step=step,
                                 metadata=metadata, tags=self._source_tags,
                                 register_as=self.register_model)

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
        """Stop the system metrics (their last samples logged), then set ``status``."""
        self.close()
        if self.run_id is not None:
            self.client.call("set status", lambda c: c.set_terminated(self.run_id, status))

    def close(self) -> None:
        """Stop the system-metrics thread (within seconds, never hanging); idempotent. finish
        calls it first; the job calls it again after a failed finish, so that no thread
        outlives the job (Hydra's basic launcher runs the next job in the same process)."""
        monitor, self._monitor = self._monitor, None
        if monitor is not None:
            monitor.stop()
