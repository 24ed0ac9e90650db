"""The one way to get an MLflow client: ``open_client(uri)``.

Every tracking call of the project goes through a :class:`TrackingClient`, which

* is created under an exclusive lock when the store is a SQLite file, so concurrent jobs on a
  new file do not race on MLflow's schema migration (see ``_create``);
* retries every call with exponential back-off (tracking/retry.py): a restarting server, a
  "database is locked" SQLite file;
* leaves the retrying to that policy: MLflow's own HTTP client would retry each request for
  about 4 minutes before our loop even sees the error (``use_own_retries``).
"""

from __future__ import annotations

import fcntl
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from mlflow.tracking import MlflowClient

from tracking.retry import DEFAULT_BACKOFF_S, DEFAULT_RETRIES, with_retries

T = TypeVar("T")
SQLITE_PREFIX = "sqlite:///"


def default_tracking_uri(base_dir: str | Path) -> str:
    """MLflow 3's embedded default, made absolute: sqlite:///<base_dir>/mlflow.db."""
    return f"{SQLITE_PREFIX}{Path(base_dir).resolve() / 'mlflow.db'}"


def resolve_tracking_uri(uri: str | None, base_dir: str | Path) -> str:
    """``uri`` itself, or the default store in ``base_dir`` when it is None or empty."""
    return default_tracking_uri(base_dir) if uri in (None, "") else str(uri)


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI; None for any other store."""
    return Path(uri[len(SQLITE_PREFIX):]) if uri.startswith(SQLITE_PREFIX) else None


def use_own_retries() -> None:
    """Make ``tracking.retries`` / ``tracking.retry_backoff_s`` the retry policy for HTTP
    servers: MLflow's own client retries each request 7 times with exponential back-off (about
    4 minutes per call against a server that is down) before our retry loop even sees the
    error. Unless the user set MLFLOW_HTTP_REQUEST_MAX_RETRIES, it is set to 0 here."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")


def _create(uri: str) -> MlflowClient:
    """An MlflowClient for ``uri``. Creating one on a SQLite file creates or migrates its schema
    (MLflow runs alembic migrations on first use): concurrent jobs doing that on a new file
    race and fail ("Online migration expected to match one row", "table ... already exists").
    For ``sqlite:///`` URIs the creation is serialised across processes with an exclusive
    ``flock`` on the database's folder, so the first job creates the schema and the others
    find it ready."""
    db = sqlite_path(uri)
    if db is None:
        return MlflowClient(uri)
    db.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(db.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return MlflowClient(uri)
    finally:
        os.close(fd)  # releases the lock


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

    def call(self, what: str, fn: Callable[[MlflowClient], T]) -> T:
        """``fn(raw client)``, retried; raises TrackingError after the last attempt."""
        return with_retries(lambda: fn(self._raw), what, self.retries, self.backoff_s)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._raw, name)
        if not callable(method):
            return method

        @functools.wraps(method)
        def retried(*args: Any, **kwargs: Any) -> Any:
            return self.call(name, lambda _: method(*args, **kwargs))

        return retried

    def experiment_id(self, name: str, description: str | None = None) -> str:
        """Id of experiment ``name``, created (with ``description`` in the UI) if missing."""
        return self.call("experiment", lambda c: get_or_create_experiment(c, name, description))


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


def open_client(uri: str, retries: int = DEFAULT_RETRIES,
                backoff_s: float = DEFAULT_BACKOFF_S) -> TrackingClient:
    """A :class:`TrackingClient` for ``uri`` (created under the SQLite lock, itself retried),
    whose calls are retried up to ``retries`` times, waiting ``backoff_s``, 2 ``backoff_s``..."""
    use_own_retries()
    raw = with_retries(lambda: _create(uri), "open the tracking store", retries, backoff_s)
    return TrackingClient(raw, uri, retries, backoff_s)
