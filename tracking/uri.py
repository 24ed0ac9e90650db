"""Is a tracking setting usable at all? A URI of an unknown scheme, a malformed one, a store
that cannot be written, or (for a sweep's driver) a server that refuses connections fails at
once with one line naming the value and what is valid, instead of being retried for minutes as
if a server were restarting.

* ``check_tracking_uri``: the URI's form and, for a SQLite file, whether its folder can be
  written (local only, no network, microseconds);
* ``check_artifact_location``: the same for ``tracking.artifact_location``;
* ``check_server_reachable``: one quick request to an http(s) server (the sweep driver, before
  any job: a job started while its server is down waits for it instead, tracking/retry.py).
"""

from __future__ import annotations

import errno
import functools
import importlib.metadata
import os
import tempfile
from pathlib import Path
from urllib.parse import SplitResult, unquote, urlsplit

from tracking.secrets import redact

SQLITE_PREFIX = "sqlite:///"
VALID_URIS = ("sqlite:///<file>.db (a relative path; sqlite:////<absolute path>.db), "
              "http(s)://<host>:<port> (a tracking server: bash slurm/mlflow_server.sh), "
              "postgresql://, mysql://, mssql:// (SQLAlchemy URLs), databricks")
SQL_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")  # mlflow.store.db.db_types
SERVER_SCHEMES = ("http", "https")
# the file store of MLflow 2 (`file:<path>` or a bare path): refused by MLflow >= 3.13 unless
# MLFLOW_ALLOW_FILE_STORE=true (mlflow/store/tracking/file_store.py)
FILE_STORE_SCHEMES = ("", "file")
CONNECT_TIMEOUT_S = 4.0  # a server that does not accept a connection in 4 s is not there
READ_TIMEOUT_S = 5.0


class TrackingConfigError(ValueError):
    """A tracking setting that cannot work; the message is one line: the setting, its value
    (any password shown as ***), why it cannot work and what is valid. Never retried."""


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative to the working directory unless it
    has a fourth slash); None for any other store."""
    if not uri.startswith(SQLITE_PREFIX):
        return None
    return Path(unquote(uri[len(SQLITE_PREFIX):].partition("?")[0]))  # less ?timeout=...


def check_tracking_uri(uri: str, *, writable: bool = True, key: str = "tracking.uri") -> None:
    """Raise TrackingConfigError when ``uri`` cannot be a tracking store: an unknown scheme, a
    server URI without a host or with a bad port, a SQLite URI without a file or (``writable``)
    whose file or folder cannot be written. No network access."""
    why = _uri_problem(uri, writable)
    if why is not None:
        raise TrackingConfigError(f"{key}={redact(uri)!r} is invalid: {why}; "
                                  f"valid: {VALID_URIS}")


def check_artifact_location(location: str, key: str = "tracking.artifact_location") -> None:
    """Raise TrackingConfigError when ``location``, a local folder (a path or file: URI), cannot
    be written; any other URI (s3://, gs://, mlflow-artifacts:...) is left to MLflow."""
    parts = urlsplit(location)
    if parts.scheme not in ("", "file"):
        return
    path = Path(unquote(parts.path)) if parts.scheme else Path(location)
    why = _folder_problem(path.absolute())
    if why is not None:
        raise TrackingConfigError(f"{key}={location!r} is invalid: {why}; valid: a folder "
                                  "that can be written, or an artifact store URI (s3://...)")


def check_server_reachable(uri: str, key: str = "tracking.uri") -> None:
    """For an http(s) ``uri``: one GET of the server's /health; raise TrackingConfigError when
    nothing accepts the connection (refused, unknown host, no answer to connect within
    CONNECT_TIMEOUT_S). Any HTTP answer, a slow one or a TLS error (MLflow has its own TLS
    settings) passes: what the server says is the tracking calls' business."""
    if urlsplit(uri).scheme.lower() not in SERVER_SCHEMES:
        return
    import requests  # an MLflow dependency; imported here: only a sweep's driver probes

    try:
        requests.get(uri.rstrip("/") + "/health", timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S))
    except (requests.exceptions.SSLError, requests.exceptions.ReadTimeout):
        return
    except requests.exceptions.RequestException as err:
        raise TrackingConfigError(
            f"{key}={redact(uri)!r} is not reachable ({_connect_reason(err)}): start a "
            "tracking server (bash slurm/mlflow_server.sh prints its tracking.uri=...), or "
            "log to a SQLite file: tracking.uri=sqlite:///<file>.db") from None


def _connect_reason(err: Exception) -> str:
    """A few words for why a connection failed (requests nests the OSError deep inside)."""
    text = str(err)
    for needle, reason in (("Connection refused", "connection refused"),
                           ("Name or service not known", "unknown host"),
                           ("nodename nor servname", "unknown host"),
                           ("Temporary failure in name resolution", "unknown host"),
                           ("No route to host", "no route to host"),
                           ("Network is unreachable", "network unreachable")):
        if needle in text:
            return reason
    if "timed out" in text.lower():
        return f"no connection within {CONNECT_TIMEOUT_S:.0f} s"
    return type(err).__name__


def is_database(uri: str) -> bool:
    """Whether ``uri`` is a database store, MLflow's SQLAlchemy store: sqlite, postgresql,
    mysql, mssql, with or without a driver (``postgresql+psycopg2://``)."""
    return _dialect(urlsplit(uri).scheme) in SQL_SCHEMES


def _dialect(scheme: str) -> str:
    """``scheme`` lower-cased, less SQLAlchemy's driver: ``postgresql`` of
    ``postgresql+psycopg2``."""
    return scheme.lower().split("+")[0]


def _uri_problem(uri: str, writable: bool) -> str | None:
    """Why ``uri`` cannot be a tracking store, or None."""
    if not isinstance(uri, str) or not uri.strip():
        return "it is empty"
    if uri != uri.strip():
        return "it has leading or trailing spaces"
    try:
        parts = urlsplit(uri)
    except ValueError as err:  # e.g. an unclosed [ in an IPv6 host
        return f"it is not a URI ({err})"
    scheme = parts.scheme.lower()
    base = _dialect(scheme)
    if base in SERVER_SCHEMES and scheme == base:
        return _server_problem(parts)
    if base == "sqlite":
        return _sqlite_problem(uri, writable)
    if base in SQL_SCHEMES or scheme == "databricks" or uri == "databricks":
        return None
    if scheme in FILE_STORE_SCHEMES:
        return _file_store_problem()
    if scheme in _plugin_schemes():
        return None
    return f"unknown scheme {parts.scheme!r}"


def _server_problem(parts: SplitResult) -> str | None:
    if not parts.hostname:
        return "it has no host"
    try:
        port = parts.port
    except ValueError:
        return f"the port {parts.netloc.rpartition(':')[2]!r} is not a number in 1-65535"
    if port == 0:
        return "the port 0 is not a port a server listens on (1-65535)"
    return None


def _sqlite_problem(uri: str, writable: bool) -> str | None:
    if uri.startswith("sqlite://") and not uri.startswith(SQLITE_PREFIX):
        return ("a SQLite URI needs three slashes before a relative path "
                "(sqlite:///mlflow.db) and four before an absolute one")
    if not uri.startswith(SQLITE_PREFIX):
        return "a SQLite URI starts with sqlite:///"
    path = uri[len(SQLITE_PREFIX):].partition("?")[0]
    if not path or path.endswith("/"):
        return "it names no database file"
    if path == ":memory:":
        return "an in-memory database keeps nothing, and each process would have its own"
    return _db_file_problem(sqlite_path(uri).absolute()) if writable else None


def _db_file_problem(db: Path) -> str | None:
    """Why the SQLite file ``db`` cannot be created or written, or None."""
    if db.is_dir():
        return f"{db} is a folder, not a database file"
    if db.exists():
        try:
            with open(db, "r+b"):  # opening to write changes nothing
                return None
        except OSError as err:
            return f"{db} cannot be written ({err.strerror})"
    return _folder_problem(db.parent)


def _folder_problem(folder: Path) -> str | None:
    """Why no file can be created in ``folder`` (created first if missing), or None. Probes
    with an unnamed temporary file: permission bits do not stop root, /proc or a read-only
    mount do."""
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder" if existing == folder else \
            f"{existing} is a file, so the folder {folder} cannot be created"
    try:
        with tempfile.TemporaryFile(dir=existing):
            return None
    except OSError as err:
        what = "cannot be written" if existing == folder else \
            f"cannot be created (its ancestor {existing} cannot be written)"
        reason = err.strerror or errno.errorcode.get(err.errno or 0, type(err).__name__)
        return f"the folder {folder} {what}: {reason}"


def _file_store_problem() -> str | None:
    """The MLflow 2 file store: refused by MLflow >= 3.13 unless MLFLOW_ALLOW_FILE_STORE."""
    if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").strip().lower() in ("true", "1"):
        return None
    from packaging.version import Version  # an MLflow dependency

    if Version(importlib.metadata.version("mlflow")).release[:2] < (3, 13):
        return None
    return ("a folder (file store) is refused by MLflow >= 3.13 unless "
            "MLFLOW_ALLOW_FILE_STORE=true; use a SQLite file in it instead")


@functools.cache
def _plugin_schemes() -> frozenset[str]:
    """Schemes of installed MLflow tracking-store plugins (entry points)."""
    return frozenset(ep.name for ep in
                     importlib.metadata.entry_points(group="mlflow.tracking_store"))
