"""Hydra glue for the sweep's MLflow parent run (the protocol itself: tracking/parent_run.py).

The driver creates the parent run before any job starts (the ``MlflowParentRun`` callback in
conf/config.yaml), every job of the multirun nests under it (``job_parent_run_id``), and the
sweepers close it, fail the runs of killed jobs or drop it when the sweep is rejected before
launch. Each function here reads what it needs from the Hydra config and passes plain values on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from tracking import parent_run
from tracking.client import resolve_tracking_uri
from tracking.retry import DEFAULT_BACKOFF_S, TrackingRefused
from tracking.uri import (
    TrackingConfigError,
    check_artifact_location,
    check_server_reachable,
    check_tracking_uri,
)

# Optuna's results reach a parent run after the sweep: a few quick retries, not a job's policy
RESULTS_RETRIES = 2
ERROR_TAG_CHARS = 5000  # MLflow tag values hold up to 8000 characters
log = logging.getLogger(__name__)


def _policy(config: DictConfig) -> dict[str, Any]:
    """The job config's retry policy (tracking.retries, tracking.retry_backoff_s)."""
    return {"retries": int(config.tracking.retries),
            "backoff_s": float(config.tracking.retry_backoff_s)}


def _tracked(config: DictConfig) -> bool:
    tracking = config.get("tracking")
    return bool(tracking and tracking.enabled)


def job_parent_run_id(cfg: DictConfig) -> str | None:
    """In a multirun job: the id of the sweep's parent run (None for a single run)."""
    hc = HydraConfig.get()
    if hc.mode is None or hc.mode.name != "MULTIRUN":
        return None
    parent = parent_run.read_parent(hc.sweep.dir)
    return parent.run_id if parent else None


class SweepNotStarted(SystemExit):
    """The sweep's tracking store cannot work (its server refuses connections, or refuses the
    parent run): the driver exits with this one line before any job is launched.

    A SystemExit because Hydra 1.3 turns any Exception of a callback into a warning and
    launches the sweep anyway (hydra/_internal/callbacks.py ``_notify``): every job would then
    spend its retries on the same dead server. Python prints the message, no traceback, and
    exits with status 1."""


class MlflowParentRun(Callback):
    """Hydra callback: on multirun start create (or reopen) the parent run; on end close it.

    Before that, the driver checks the tracking settings: a URI or artifact location that
    cannot work is left to the sweeper's check of every job (sweep/validate.py, which names it
    with the other bad values, before any launch), and no parent run is created for it; an
    http(s) server that refuses connections, or a parent run the store refuses, stop the sweep
    at once (``SweepNotStarted``). A server that answers but fails now and then is retried
    (tracking/retry.py) as in the jobs."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if _rank() != 0:  # `torchrun ... -m`: rank 0's driver owns the parent run
            return
        if not config.tracking.enabled:
            return
        uri = resolve_tracking_uri(config.tracking.uri, config.hydra.runtime.cwd)
        location = config.tracking.get("artifact_location")
        try:
            check_tracking_uri(uri)
            if location:
                check_artifact_location(location)
        except TrackingConfigError:
            return  # named by the sweeper's config check, before any job is launched
        try:
            check_server_reachable(uri)
        except TrackingConfigError as err:
            raise SweepNotStarted(f"the sweep was not started: {err}") from None
        overrides = " ".join(config.hydra.overrides.task)
        try:
            parent_run.open_parent(
                config.hydra.sweep.dir,
                tracking_uri=uri,
                experiment=config.tracking.experiment,
                experiment_description=config.tracking.description or _description(),
                run_name=str(config.sweep_name),
                note=f"Sweep `{config.sweep_name}`: python sweep/run.py -m {overrides}",
                tags={"overrides": overrides[:5000],
                      "slurm_job_id": os.environ.get("SLURM_JOB_ID", "")},
                artifact_location=location or None,
                **_policy(config))
        except (TrackingRefused, TrackingConfigError) as err:
            raise SweepNotStarted("the sweep was not started: its MLflow parent run could not "
                                  f"be created: {err}") from None

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if _rank() != 0:
            return
        close_parent(config, "FINISHED")


def _rank() -> int:
    """This process's rank in a data-parallel job (0 outside one)."""
    # imported here, as the description below: they import torch and the model table, which
    # Hydra's plugin discovery (this module is imported with the sweepers) must not pay for
    from training.distributed import detect

    return detect()[1]


def _description() -> str:
    from sweep.experiment_notes import DESCRIPTION

    return DESCRIPTION


def close_parent(config: DictConfig, status: str, tags: dict[str, str] | None = None) -> None:
    """Set the sweep's parent run to ``status`` (FINISHED / FAILED), with optional tags."""
    if config.tracking.enabled:
        parent_run.close_parent(config.hydra.sweep.dir, status, tags, **_policy(config))


@contextmanager
def parent_run_failed_on_error(config: DictConfig) -> Iterator[None]:
    """Within the block (a sweeper's ``sweep``), any exception, KeyboardInterrupt and SIGTERM
    (``JobTerminated``) included, first closes the sweep's MLflow parent run as FAILED with the
    reason in its ``error`` tag, then propagates: Hydra closes the parent (FINISHED) only when
    ``sweep`` returns, so without this an interrupted driver leaves it RUNNING for good. An
    exception with ``parent_run_closed`` true (the grid sweeper's SweepFailed, after it closed
    the run with its failed_jobs count) leaves the run as the sweeper closed it."""
    try:
        yield
    except BaseException as err:
        _fail_parent_run(config, err)
        raise


def _fail_parent_run(config: DictConfig, err: BaseException) -> None:
    if not _tracked(config):
        return  # no tracking (or a task config without it): no parent run
    if getattr(err, "parent_run_closed", False):
        return  # the sweeper closed it already, with its own account (a grid's failed jobs)
    reason = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    try:
        from tracking.secrets import redact

        close_parent(config, "FAILED", {"error": redact(reason)[:ERROR_TAG_CHARS]})
    except Exception as close_err:  # noqa: BLE001 - the sweep's own error matters more
        log.warning("could not mark the sweep's MLflow parent run FAILED: %s", close_err)


def abandon_parent_if_empty(config: DictConfig) -> None:
    """Delete the sweep's parent run if no job has logged under it (a sweep rejected before
    launch), so it does not linger as RUNNING in the UI; a resumed sweep's parent is kept."""
    if config.tracking.enabled:
        parent_run.abandon_parent_if_empty(config.hydra.sweep.dir, **_policy(config))


def fail_orphaned_runs(config: DictConfig) -> list[str]:
    """After every job of the sweep has ended: mark the sweep's child runs still RUNNING (their
    process was killed) FAILED with an ``error`` tag; returns their run ids. Never raises."""
    try:
        if not _tracked(config):
            return []
        return parent_run.fail_orphaned_runs(config.hydra.sweep.dir, **_policy(config))
    except Exception as err:  # noqa: BLE001 - the sweep's own outcome matters more
        log.warning("could not check the sweep's runs for killed jobs: %s", err)
        return []


def log_to_parent_run(sweep_dir: str, files: list[Path], summary: dict) -> bool:
    """Log an Optuna sweep's result ``files`` under ``optuna/`` and its best value as tags to the
    sweep's parent run; True if there is one. A tracking failure is only a warning: the results
    are on disk already."""
    try:
        if parent_run.read_parent(sweep_dir) is None:
            return False
        tags = {"optuna.n_complete": str(summary["n_trials"]["COMPLETE"])}
        if summary.get("best_value") is not None:
            tags["optuna.best_value"] = str(summary["best_value"])
        if "pareto_front" in summary:
            tags["optuna.pareto_front_size"] = str(len(summary["pareto_front"]))
        run_id = parent_run.log_to_parent(sweep_dir, files, "optuna", tags,
                                          retries=RESULTS_RETRIES, backoff_s=DEFAULT_BACKOFF_S)
        log.info("Optuna results logged to MLflow parent run %s", run_id)
    except Exception as err:  # noqa: BLE001 - results are on disk already; never fatal
        log.warning("Could not log Optuna results to the MLflow parent run: %s", err)
    return True
