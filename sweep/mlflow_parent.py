"""The sweep's MLflow parent run, created by the driver before any job starts.

Creating the database, the experiment and the parent run in the launching process avoids the
races of many jobs doing it at once (MLflow schema migrations and experiment creation on one
SQLite file). The parent's identity is written to ``<sweep dir>/.mlflow_parent_run.json``, which
every job (local or on SLURM, sharing the file system) reads to nest its run under it, and
which a restarted sweep (same sweep dir, e.g. a resumed Optuna study) reuses.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from sweep.experiment_notes import DESCRIPTION
from tracking.mlflow_tracker import (
    get_or_create_experiment,
    make_client,
    resolve_tracking_uri,
)
from tracking.retry import with_retries
from training.distributed import detect

PARENT_FILE = ".mlflow_parent_run.json"
log = logging.getLogger(__name__)


def read_parent(sweep_dir: str | Path) -> dict[str, str] | None:
    """{"tracking_uri", "experiment_id", "run_id"} of the sweep's parent run, if any."""
    path = Path(sweep_dir) / PARENT_FILE
    return json.loads(path.read_text()) if path.exists() else None


def job_parent_run_id(cfg: DictConfig) -> str | None:
    """In a multirun job: the id of the sweep's parent run (None for a single run)."""
    hc = HydraConfig.get()
    if hc.mode is None or hc.mode.name != "MULTIRUN":
        return None
    parent = read_parent(hc.sweep.dir)
    return parent["run_id"] if parent else None


class MlflowParentRun(Callback):
    """Hydra callback: on multirun start create (or reopen) the parent run; on end close it."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if detect()[1] != 0:  # `torchrun ... -m`: rank 0's driver owns the parent run
            return
        if not config.tracking.enabled:
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        uri = resolve_tracking_uri(config.tracking.uri, config.hydra.runtime.cwd)
        client = make_client(uri)
        retry = lambda what, fn: with_retries(  # noqa: E731
            fn, what, int(config.tracking.retries), float(config.tracking.retry_backoff_s))
        parent = read_parent(sweep_dir)
        if parent is not None:
            retry("reopen parent run", lambda: client.update_run(parent["run_id"], "RUNNING"))
            log.info("MLflow: resuming sweep parent run %s", parent["run_id"])
            return
        exp_id = retry("experiment", lambda: get_or_create_experiment(
            client, config.tracking.experiment, config.tracking.description or DESCRIPTION))
        overrides = " ".join(config.hydra.overrides.task)
        tags = {
            "sweep": "true",
            "sweep_dir": str(sweep_dir.resolve()),
            "overrides": overrides[:5000],
            "mlflow.note.content":
                f"Sweep `{config.sweep_name}`: python sweep/run.py -m {overrides}",
            "slurm_job_id": os.environ.get("SLURM_JOB_ID", ""),
        }
        run = retry("create parent run", lambda: client.create_run(
            exp_id, run_name=str(config.sweep_name), tags=tags))
        parent = {"tracking_uri": uri, "experiment_id": exp_id, "run_id": run.info.run_id}
        (sweep_dir / PARENT_FILE).write_text(json.dumps(parent))
        log.info("MLflow: sweep parent run %s (%s) in experiment '%s' at %s",
                 config.sweep_name, run.info.run_id, config.tracking.experiment, uri)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if detect()[1] != 0:
            return
        close_parent(config, "FINISHED")


def close_parent(config: DictConfig, status: str, tags: dict[str, str] | None = None) -> None:
    """Set the sweep's parent run to ``status`` (FINISHED / FAILED), with optional tags."""
    parent = read_parent(config.hydra.sweep.dir) if config.tracking.enabled else None
    if parent is None:
        return
    client = MlflowClient(parent["tracking_uri"])
    retries, backoff = int(config.tracking.retries), float(config.tracking.retry_backoff_s)
    for key, value in (tags or {}).items():
        with_retries(lambda k=key, v=value: client.set_tag(parent["run_id"], k, v),
                     "tag parent run", retries, backoff)
    with_retries(lambda: client.set_terminated(parent["run_id"], status),
                 "close parent run", retries, backoff)


def abandon_parent_if_empty(config: DictConfig) -> None:
    """Delete the sweep's parent run if no job has logged under it (a sweep rejected before
    launch), so it does not linger as RUNNING in the UI; a resumed sweep's parent is kept."""
    parent = read_parent(config.hydra.sweep.dir) if config.tracking.enabled else None
    if parent is None:
        return
    client = MlflowClient(parent["tracking_uri"])
    children = client.search_runs([parent["experiment_id"]],
                                  f"tags.mlflow.parentRunId = '{parent['run_id']}'",
                                  max_results=1)
    if not children:
        client.delete_run(parent["run_id"])
        (Path(config.hydra.sweep.dir) / PARENT_FILE).unlink()


ORPHAN_ERROR = ("the job ended without closing its run (killed: SIGKILL, scancel, out of memory "
                "or node failure); rerun the same command to resume it from its checkpoint")


def fail_orphaned_runs(config: DictConfig) -> list[str]:
    """After every job of the sweep has ended: mark the sweep's child runs still RUNNING (their
    process was killed before it could close them) FAILED with an ``error`` tag; returns their
    run ids. Never raises: a tracking outage here only leaves the runs as they are."""
    try:
        tracking = config.get("tracking")
        parent = read_parent(config.hydra.sweep.dir) if tracking and tracking.enabled else None
        if parent is None:
            return []
        client = MlflowClient(parent["tracking_uri"])
        retries, backoff = int(config.tracking.retries), float(config.tracking.retry_backoff_s)
        orphans = with_retries(lambda: client.search_runs(
            [parent["experiment_id"]],
            f"tags.mlflow.parentRunId = '{parent['run_id']}' and attributes.status = 'RUNNING'",
            max_results=10000), "find orphaned runs", retries, backoff)
        for run in orphans:
            run_id = run.info.run_id
            with_retries(lambda r=run_id: client.set_tag(r, "error", ORPHAN_ERROR),
                         "tag orphaned run", retries, backoff)
            with_retries(lambda r=run_id: client.set_terminated(r, "FAILED"),
                         "fail orphaned run", retries, backoff)
            log.warning("MLflow run %s (%s) was left RUNNING by a killed job: marked FAILED",
                        run.info.run_name, run_id)
        return [r.info.run_id for r in orphans]
    except Exception as err:  # noqa: BLE001 - the sweep's own outcome matters more
        log.warning("could not check the sweep's runs for killed jobs: %s", err)
        return []
