"""Retry a tracking call with exponential back-off (a restarting server, a locked SQLite); an
error no retry can fix (a bad setting, a request the server refuses) is raised at once."""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable
from typing import TypeVar

from tracking.uri import TrackingConfigError

T = TypeVar("T")
log = logging.getLogger(__name__)
# conf/tracking/mlflow.yaml's tracking.retries / tracking.retry_backoff_s, for callers without a
# job config (the analysis scripts, the benchmarks)
DEFAULT_RETRIES = 6
DEFAULT_BACKOFF_S = 1.0
# MlflowException.error_code names (mlflow/exceptions.py) of a request that the store received
# and refused (HTTP 400, 401, 403, 404, 501): the same request would be refused again. Left
# out, so retried: a server's 5xx and 429, TEMPORARILY_UNAVAILABLE (a locked SQLite file), a
# failed connection (MLflow reports it as INTERNAL_ERROR), and RESOURCE_ALREADY_EXISTS, which
# a concurrent job's experiment creation raises and the next attempt resolves
# (tracking/client.py get_or_create_experiment).
PERMANENT_CODES = frozenset({
    "BAD_REQUEST", "INVALID_PARAMETER_VALUE", "ENDPOINT_NOT_FOUND", "NOT_FOUND",
    "RESOURCE_DOES_NOT_EXIST", "PERMISSION_DENIED", "UNAUTHENTICATED", "CUSTOMER_UNAUTHORIZED",
    "NOT_IMPLEMENTED"})
# file-system errors of a local store or artifact (a file under a file, a read-only folder)
PERMANENT_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR,
                              errno.EISDIR, errno.ENOENT, errno.ENAMETOOLONG})
MAX_MESSAGE = 500  # characters of the cause in a TrackingError (a server may answer a page)


class TrackingError(RuntimeError):
    """A tracking call failed: after every retry, or at once when no retry could help."""


class TrackingRefused(TrackingError):
    """A tracking call failed in a way no retry can fix (``is_permanent``); not retried. The
    user's to fix (a server that is not MLflow, missing credentials, a database driver not
    installed): a single run shows the one line, no traceback (sweep/user_errors.py)."""

    user_error = True


def is_permanent(err: BaseException) -> bool:
    """True for an error that retrying cannot fix: a tracking setting that cannot work, a
    missing database driver, a request the store refused (PERMANENT_CODES), a local file that
    cannot be read or written. A connection that fails, a server error or a locked database
    are transient."""
    if isinstance(err, TrackingError | TrackingConfigError | ImportError):
        return True
    code = getattr(err, "error_code", None)
    if isinstance(code, str) and type(err).__module__.startswith("mlflow"):
        return code in PERMANENT_CODES
    return (isinstance(err, OSError) and not isinstance(err, ConnectionError | TimeoutError)
            and err.errno in PERMANENT_ERRNOS)


def one_line(err: BaseException) -> str:
    """``Type: first line of the message`` (at most MAX_MESSAGE characters)."""
    lines = str(err).strip().splitlines()
    text = lines[0] if lines else ""
    if len(text) > MAX_MESSAGE:
        text = text[:MAX_MESSAGE] + "..."
    return f"{type(err).__name__}: {text}"


def with_retries(fn: Callable[[], T], what: str, retries: int, backoff_s: float,
                 where: str | None = None) -> T:
    """Call ``fn``; on a transient exception wait backoff_s, 2 backoff_s, ... up to ``retries``
    more times (one warning line each), then raise TrackingError naming ``what`` and the last
    error. A permanent error (``is_permanent``) is raised at once: a TrackingConfigError or
    TrackingError as it is, any other as a TrackingRefused naming ``where`` (the store's URI,
    without credentials) when given."""
    delay = backoff_s
    for attempt in range(retries + 1):
        try:
            return fn()
        except Exception as err:  # noqa: BLE001 - classified below
            if isinstance(err, TrackingError | TrackingConfigError):
                raise
            if is_permanent(err):
                to = f" to {where}" if where else ""
                raise TrackingRefused(f"tracking call '{what}'{to} failed (not retried: the "
                                      f"same call would fail again): {one_line(err)}") from err
            if attempt == retries:
                raise TrackingError(f"tracking call '{what}' failed after {retries + 1} "
                                    f"attempts: {one_line(err)}") from err
            log.warning("tracking call '%s' failed (%s); retrying in %.1f s",
                        what, one_line(err)[:300], delay)
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")
