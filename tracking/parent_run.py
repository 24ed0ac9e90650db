"""A sweep's parent run: created by the driver before any job starts, found by the jobs through
a side file in the sweep dir.

Creating the database, the experiment and the parent run in the launching process avoids the
races of many jobs doing it at once (MLflow schema migrations and experiment creation on one
SQLite file). The parent's identity ``{"tracking_uri", "experiment_id", "run_id"}`` is written
to ``<sweep dir>/.mlflow_parent_run.json`` (``PARENT_FILE``), which every job (local or on
SLURM, sharing the file system) reads to nest its run under it (tag ``mlflow.parentRunId``), and
which a restarted sweep (same sweep dir, e.g. a resumed Optuna study) reuses. A parent run
carries the tags ``sweep=true`` and ``sweep_dir``, and MLflow's source tags
(tracking/source_tags.py: the driver's script, ``sweep/run.py``, and its git commit). The side
file is readable by its owner only (0600) and holds the URI without any ``user:password@``
(tracking/secrets.py: the jobs find the credentials in the environment they inherit).

Plain arguments only (sweep dir, URI, retry policy): the Hydra glue is sweep/mlflow_parent.py.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tracking.client import TrackingClient, open_client
from tracking.retry import DEFAULT_BACKOFF_S, DEFAULT_RETRIES
from tracking.secrets import create_private
from tracking.source_tags import USER, source_tags, user

PARENT_FILE = ".mlflow_parent_run.json"
PARENT_TAG = "mlflow.parentRunId"  # on a job's run: its sweep's parent run id
SWEEP_TAG = "sweep"  # "true" on a sweep's parent run
NOTE_TAG = "mlflow.note.content"  # the run's description in the MLflow UI
ORPHAN_ERROR = ("the job ended without closing its run (killed: SIGKILL, scancel, out of memory "
                "or node failure); rerun the same command to resume it from its checkpoint")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParentRun:
    """Where a sweep's parent run lives. ``experiment_id`` is None in a side file written by
    another tool with only ``tracking_uri`` and ``run_id``."""

    tracking_uri: str
    run_id: str
    experiment_id: str | None = None

    def client(self, retries: int, backoff_s: float) -> TrackingClient:
        return open_client(self.tracking_uri, retries, backoff_s)


def read_parent(sweep_dir: str | Path) -> ParentRun | None:
    """The sweep's parent run from its side file, or None when there is none."""
    path = Path(sweep_dir) / PARENT_FILE
    if not path.exists():
        return None
    info = json.loads(path.read_text())
    return ParentRun(info["tracking_uri"], info["run_id"], info.get("experiment_id"))


def open_parent(sweep_dir: str | Path, *, tracking_uri: str, experiment: str,
                experiment_description: str | None, run_name: str, note: str,
                tags: dict[str, str], retries: int = DEFAULT_RETRIES,
                backoff_s: float = DEFAULT_BACKOFF_S,
                artifact_location: str | None = None,
                source: Mapping[str, str] | None = None) -> ParentRun:
    """Reopen (status RUNNING) the parent run of a restarted sweep, else create it: experiment
    ``experiment`` (created with ``experiment_description`` and ``artifact_location``, the
    jobs' rule in TrackingClient.experiment_id, if missing), run ``run_name`` with
    ``tags``, ``sweep=true``, ``sweep_dir``, the UI description ``note`` and the source tags
    ``source`` (None: those of this process's script, ``sys.argv[0]``); then write the side
    file."""
    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    client = open_client(tracking_uri, retries, backoff_s)
    parent = read_parent(sweep_dir)
    if parent is not None:
        client.call("reopen parent run", lambda c: c.update_run(parent.run_id, "RUNNING"))
        # an interrupted attempt left an `error` tag: the sweep goes on, as a resumed job's run
        if "error" in client.call("get parent run", lambda c: c.get_run(parent.run_id)).data.tags:
            client.call("clear error tag", lambda c: c.delete_tag(parent.run_id, "error"))
        log.info("MLflow: resuming sweep parent run %s", parent.run_id)
        return parent
    exp_id = client.experiment_id(experiment, experiment_description, artifact_location)
    source = source_tags(sys.argv[0]) if source is None else source
    run_tags = {USER: user(), **source, **tags, SWEEP_TAG: "true",
                "sweep_dir": str(sweep_dir.resolve()), NOTE_TAG: note}
    run = client.call("create parent run",
                      lambda c: c.create_run(exp_id, run_name=run_name, tags=run_tags))
    parent = ParentRun(client.uri, run.info.run_id, exp_id)  # client.uri: no credentials
    create_private(sweep_dir / PARENT_FILE)
    (sweep_dir / PARENT_FILE).write_text(json.dumps(
        {"tracking_uri": client.uri, "experiment_id": exp_id, "run_id": parent.run_id}))
    log.info("MLflow: sweep parent run %s (%s) in experiment '%s' at %s",
             run_name, parent.run_id, experiment, client.uri)
    return parent


def close_parent(sweep_dir: str | Path, status: str, tags: dict[str, str] | None = None,
                 retries: int = DEFAULT_RETRIES, backoff_s: float = DEFAULT_BACKOFF_S) -> None:
    """Set the sweep's parent run (if any) to ``status`` (FINISHED / FAILED), with ``tags``."""
    parent = read_parent(sweep_dir)
    if parent is None:
        return
    client = parent.client(retries, backoff_s)
    for key, value in (tags or {}).items():
        client.call("tag parent run", lambda c, k=key, v=value: c.set_tag(parent.run_id, k, v))
    client.call("close parent run", lambda c: c.set_terminated(parent.run_id, status))


def _children(client: TrackingClient, parent: ParentRun, extra_filter: str = "",
              max_results: int = 10000, what: str = "find child runs") -> list:
    """The job runs nested under ``parent`` (MLflow Run objects), optionally filtered more."""
    def search(c) -> list:
        exp_id = parent.experiment_id or c.get_run(parent.run_id).info.experiment_id
        query = f"tags.{PARENT_TAG} = '{parent.run_id}'" + extra_filter
        return list(c.search_runs([exp_id], query, max_results=max_results))

    return client.call(what, search)


def abandon_parent_if_empty(sweep_dir: str | Path, retries: int = DEFAULT_RETRIES,
                            backoff_s: float = DEFAULT_BACKOFF_S) -> None:
    """Delete the sweep's parent run and its side file if no job has logged under it (a sweep
    rejected before launch), so it does not linger as RUNNING in the UI; a resumed sweep's
    parent (which has children) is kept."""
    parent = read_parent(sweep_dir)
    if parent is None:
        return
    client = parent.client(retries, backoff_s)
    if not _children(client, parent, max_results=1):
        client.call("delete parent run", lambda c: c.delete_run(parent.run_id))
        (Path(sweep_dir) / PARENT_FILE).unlink()


def fail_orphaned_runs(sweep_dir: str | Path, retries: int = DEFAULT_RETRIES,
                       backoff_s: float = DEFAULT_BACKOFF_S) -> list[str]:
    """After every job of the sweep has ended: mark the sweep's child runs still RUNNING (their
    process was killed before it could close them) FAILED with an ``error`` tag; returns their
    run ids. Never raises: a tracking outage here only leaves the runs as they are."""
    try:
        parent = read_parent(sweep_dir)
        if parent is None:
            return []
        client = parent.client(retries, backoff_s)
        orphans = _children(client, parent, " and attributes.status = 'RUNNING'",
                            what="find orphaned runs")
        for run in orphans:
            run_id = run.info.run_id
            client.call("tag orphaned run", lambda c, r=run_id: c.set_tag(r, "error", ORPHAN_ERROR))
            client.call("fail orphaned run", lambda c, r=run_id: c.set_terminated(r, "FAILED"))
            log.warning("MLflow run %s (%s) was left RUNNING by a killed job: marked FAILED",
                        run.info.run_name, run_id)
        return [r.info.run_id for r in orphans]
    except Exception as err:  # noqa: BLE001 - the sweep's own outcome matters more
        log.warning("could not check the sweep's runs for killed jobs: %s", err)
        return []


def log_to_parent(sweep_dir: str | Path, files: list[Path], artifact_path: str,
                  tags: dict[str, str], retries: int = DEFAULT_RETRIES,
                  backoff_s: float = DEFAULT_BACKOFF_S) -> str | None:
    """Log ``files`` under ``artifact_path`` and set ``tags`` on the sweep's parent run; returns
    its run id, or None when the sweep has no parent run. Raises on a tracking failure."""
    parent = read_parent(sweep_dir)
    if parent is None:
        return None
    client = parent.client(retries, backoff_s)
    for path in files:
        client.call("log artifact to parent run",
                    lambda c, p=path: c.log_artifact(parent.run_id, str(p), artifact_path))
    for key, value in tags.items():
        client.call("tag parent run", lambda c, k=key, v=value: c.set_tag(parent.run_id, k, v))
    return parent.run_id
