"""The one way to get an MLflow client: ``open_client(uri)``.

Every tracking call of the project goes through a :class:`TrackingClient`, which

* is created under an exclusive lock when the store is a SQLite file, so concurrent jobs on a
  new file do not race on MLflow's schema migration (see ``_create``);
* retries every call with exponential back-off (tracking/retry.py): a restarting server, a
  "database is locked" SQLite file;
* leaves the retrying to that policy: MLflow's own HTTP client would retry each request for
  about 4 minutes before our loop even sees the error (``use_own_retries``);
* refuses a URI that cannot work before any call (tracking/uri.py), and raises an error no
  retry can fix at once (tracking/retry.py ``is_permanent``);
* creates experiments of a SQLite store with their artifacts beside the database
  (``artifact_location``), not in ``./mlruns`` of whatever folder the command ran in.
"""

from __future__ import annotations

import fcntl
import functools
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from tracking.retry import DEFAULT_BACKOFF_S, DEFAULT_RETRIES, with_retries
from tracking.secrets import create_private, credentialed, stash_credentials
from tracking.store_template import seed_new_store
from tracking.uri import SQLITE_PREFIX, check_tracking_uri, is_database, sqlite_path

if TYPE_CHECKING:  # MLflow itself is imported when a client is created (``_create``): a job
    # without tracking, or one that only checks its config, never pays its ~2 s import
    from mlflow.tracking import MlflowClient

T = TypeVar("T")
ARTIFACTS_DIR = "mlartifacts"  # beside a SQLite database: <db folder>/mlartifacts/<experiment>


def default_tracking_uri(base_dir: str | Path) -> str:
    """MLflow 3's embedded default, made absolute: sqlite:///<base_dir>/mlflow.db."""
    return f"{SQLITE_PREFIX}{Path(base_dir).resolve() / 'mlflow.db'}"


def resolve_tracking_uri(uri: str | None, base_dir: str | Path) -> str:
    """``uri`` itself, or the default store in ``base_dir`` when it is None or empty."""
    return default_tracking_uri(base_dir) if uri in (None, "") else str(uri)


def experiment_artifact_location(uri: str, experiment: str,
                                 location: str | None = None) -> str | None:
    """Where a new experiment ``experiment`` of store ``uri`` keeps its runs' artifacts:
    ``location`` when the user set one (tracking.artifact_location), else for a SQLite store
    ``<db folder>/mlartifacts/<experiment>`` (the name made a safe folder name; runs get their
    own ``<run id>/artifacts`` inside), else None: the store's default (a server's own
    artifact root). An experiment created before keeps the location it has (an older version
    of this project left SQLite artifacts in ``./mlruns`` of the launch directory)."""
    if location:
        return location
    db = sqlite_path(uri)
    if db is None:
        return None
    folder = re.sub(r"[^A-Za-z0-9._-]+", "_", experiment).strip("._") or "experiment"
    return str(db.absolute().parent / ARTIFACTS_DIR / folder)


def use_own_retries() -> None:
    """Make ``tracking.retries`` / ``tracking.retry_backoff_s`` the retry policy for HTTP
    servers: MLflow's own client retries each request 7 times with exponential back-off (about
    4 minutes per call against a server that is down) before our retry loop even sees the
    error. Unless the user set MLFLOW_HTTP_REQUEST_MAX_RETRIES, it is set to 0 here. MLflow's
    traceback for each "database is locked" of a SQLite store is dropped too: the retry loop
    reports each attempt in one line, and the last error in its TrackingError."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    db_log = logging.getLogger("mlflow.store.db.utils")
    if _drop_retried_db_errors not in db_log.filters:
        db_log.addFilter(_drop_retried_db_errors)


def _drop_retried_db_errors(record: logging.LogRecord) -> bool:
    """False (drop) for MLflow's "SQLAlchemy database error" log record with its traceback,
    logged before it raises the error our retry loop handles."""
    return not str(record.msg).startswith("SQLAlchemy database error")


def _create(uri: str) -> MlflowClient:
    """An MlflowClient for ``uri``. Creating one on a SQLite file creates or migrates its schema
    (MLflow runs alembic migrations on first use): concurrent jobs doing that on a new file
    race and fail ("Online migration expected to match one row", "table ... already exists").
    For ``sqlite:///`` URIs the creation is serialised across processes with an exclusive
    ``flock`` on the database's folder, so the first job creates the schema and the others
    find it ready; a new file gets its schema as a copy (tracking/store_template.py)."""
    from mlflow.tracking import MlflowClient

    db = sqlite_path(uri)
    if db is None:
        return MlflowClient(uri)
    db.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(db.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        create_private(db)  # owner-only, before SQLite creates it (and its journals) 0644
        seed_new_store(db)  # a new file: a copy of the migrated schema, not 1.5-2.7 s of alembic
        return MlflowClient(uri)
    finally:
        os.close(fd)  # releases the lock


def holds_interrupts(uri: str) -> bool:
    """Whether a call to store ``uri`` holds Ctrl-C and SIGTERM until it ends: a database's
    (SQLAlchemy's; SQLite above all: an interrupt inside SQLAlchemy leaves its write lock held,
    tracking/interrupts.py). A server's call can hang up to MLflow's request timeout (120 s)
    and leaves no lock here: it stays interruptible."""
    return is_database(uri)


class TrackingClient:
    """An MlflowClient whose every call is retried with back-off.

    ``client.search_runs(...)`` (any MlflowClient method) is retried under the method's name;
    ``client.call("what", lambda c: ...)`` runs a sequence of raw calls as one retried step
    named ``what`` (the name the warnings and the final TrackingError show).
    """

    def __init__(self, raw: MlflowClient, uri: str, retries: int, backoff_s: float) -> None:
        self._raw = raw
        self.uri = uri
        self.retries = retries
        self.backoff_s = backoff_s
        self.holds_interrupts = holds_interrupts(uri)

    def call(self, what: str, fn: Callable[[MlflowClient], T]) -> T:
        """``fn(raw client)``, retried; raises TrackingError after the last attempt. Against a
        database, Ctrl-C or SIGTERM waits for the attempt to end (``holds_interrupts``)."""
        return with_retries(lambda: fn(self._raw), what, self.retries, self.backoff_s,
                            where=self.uri, hold_interrupts=self.holds_interrupts)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._raw, name)
        if not callable(method):
            return method

        @functools.wraps(method)
        def retried(*args: Any, **kwargs: Any) -> Any:
            return self.call(name, lambda _: method(*args, **kwargs))

        return retried

    def experiment_id(self, name: str, description: str | None = None,
                      artifact_location: str | None = None) -> str:
        """Id of experiment ``name``, created (with ``description`` in the UI) if missing, its
        artifacts in ``artifact_location`` (None: beside a SQLite database, see
        ``experiment_artifact_location``)."""
        location = experiment_artifact_location(self.uri, name, artifact_location)
        return self.call("experiment",
                         lambda c: get_or_create_experiment(c, name, description, location))


def get_or_create_experiment(client: MlflowClient, name: str, description: str | None = None,
                             artifact_location: str | None = None) -> str:
    """Experiment id for ``name``; creation races between concurrent jobs are tolerated."""
    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            tags = {"mlflow.note.content": description} if description else None
            return client.create_experiment(name, artifact_location=artifact_location,
                                            tags=tags)
        except Exception:  # noqa: BLE001 - another process created it first
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    return exp.experiment_id


def open_client(uri: str, retries: int = DEFAULT_RETRIES,
                backoff_s: float = DEFAULT_BACKOFF_S) -> TrackingClient:
    """A :class:`TrackingClient` for ``uri`` (created under the SQLite lock, itself retried),
    whose calls are retried up to ``retries`` times, waiting ``backoff_s``, 2 ``backoff_s``...
    A URI that cannot be a store raises TrackingConfigError first (its form only: a reader may
    open a database it cannot write).

    A ``user:password@`` in ``uri`` goes to the environment (tracking/secrets.py): the client's
    ``uri``, and so every message and record, holds the clean URI; only the MlflowClient gets
    the credentials (MLflow's basic-auth variables for a server, the URL for a database)."""
    uri = stash_credentials(uri)
    check_tracking_uri(uri, writable=False)
    use_own_retries()
    raw = with_retries(lambda: _create(credentialed(uri)), "open the tracking store", retries,
                       backoff_s, where=uri, hold_interrupts=holds_interrupts(uri))
    return TrackingClient(raw, uri, retries, backoff_s)
