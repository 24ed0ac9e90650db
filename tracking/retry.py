"""Retry a tracking call with exponential back-off (a restarting server, a locked SQLite); an
error no retry can fix (a bad setting, a request the server refuses) is raised at once.

The loop is tenacity's (``with_retries``); the policy is the project's: ``tracking.retries``
more attempts after the first, waits of ``tracking.retry_backoff_s`` doubling each time, and
``is_permanent`` deciding what is retried.

Why not MLflow's own HTTP retries alone (MLFLOW_HTTP_REQUEST_MAX_RETRIES 7,
MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR 2, MLFLOW_HTTP_REQUEST_TIMEOUT 120 s; mlflow/utils/
request_utils.py hands them to urllib3's ``Retry`` inside the requests session): they cover
HTTP requests only, so a SQLite store's "database is locked" (an MlflowException with
TEMPORARILY_UNAVAILABLE from mlflow/store/db/utils.py, retried by MLflow only when its text
says "deadlock") would fail the job at once; their budget is fixed per request (waits of
0, 4, 8, ... s capped at 120 s, about 4 minutes in all, and at most 10 retries), so a server
down longer than that at a job's start or mid-run fails the call with no log line until then;
and their wait is not ``tracking.retry_backoff_s``. Stacked under this loop they would multiply
it (7 x ``tracking.retries`` requests per call), so tracking/client.py ``use_own_retries``
sets MLFLOW_HTTP_REQUEST_MAX_RETRIES to 0 unless the user set it; the request timeout stays
MLflow's (a hung server costs up to MLFLOW_HTTP_REQUEST_TIMEOUT per attempt).
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from tracking.interrupts import held
from tracking.uri import TrackingConfigError

if TYPE_CHECKING:  # imported by the first retried call: the config check and `--help`, which
    # import this module for its errors, do not pay for tenacity (and asyncio, ~30 ms cold)
    import tenacity

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
# what a database says when a concurrent writer inserted the same key first (MLflow's SQL store
# reports it, through a server, as a 400 with the driver's message)
UNIQUE_VIOLATIONS = ("UNIQUE constraint failed", "duplicate key value violates unique constraint")
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
    """True for an error that retrying cannot fix (raised at once), False for a transient one
    (retried with back-off). The one classification of the project's tracking errors:

    ==========================================  =========  ====================================
    error                                       class      e.g.
    ==========================================  =========  ====================================
    TrackingError, TrackingConfigError          permanent  a tracking setting that cannot work
    ImportError                                 permanent  no database driver (psycopg2)
    MlflowException, a unique-key violation     transient  two jobs inserting the same row at
                                                           once (the same dataset's inputs to a
                                                           server: SQLite "UNIQUE constraint
                                                           failed", PostgreSQL "duplicate key
                                                           value"): the store answers 400, and
                                                           the retry finds the row and succeeds
    MlflowException, code in PERMANENT_CODES    permanent  HTTP 400, 401, 403, 404, 501: a
                                                           request the store got and refused
    MlflowException, any other code             transient  HTTP 5xx (INTERNAL_ERROR,
                                                           TEMPORARILY_UNAVAILABLE), 429
                                                           (REQUEST_LIMIT_EXCEEDED), SQLite
                                                           "database is locked"
                                                           (TEMPORARILY_UNAVAILABLE), connection
                                                           refused / reset or a timeout (MLflow
                                                           reports INTERNAL_ERROR), a concurrent
                                                           experiment creation
                                                           (RESOURCE_ALREADY_EXISTS)
    OSError, errno in PERMANENT_ERRNOS          permanent  a read-only folder, a file where a
                                                           folder should be
    ConnectionError, TimeoutError               transient  refused / reset, timed out
    any other Exception                         transient
    ==========================================  =========  ====================================

    (A BaseException that is not an Exception, e.g. KeyboardInterrupt, is never retried:
    ``with_retries`` lets it through.)
    """
    if isinstance(err, TrackingError | TrackingConfigError | ImportError):
        return True
    code = getattr(err, "error_code", None)
    if isinstance(code, str) and type(err).__module__.startswith("mlflow"):
        if any(text in str(err) for text in UNIQUE_VIOLATIONS):
            return False  # lost an insert race: the row is there now
        return code in PERMANENT_CODES
    return (isinstance(err, OSError) and not isinstance(err, ConnectionError | TimeoutError)
            and err.errno in PERMANENT_ERRNOS)


def _is_transient(err: BaseException) -> bool:
    return isinstance(err, Exception) and not is_permanent(err)


def one_line(err: BaseException) -> str:
    """``Type: first line of the message`` (at most MAX_MESSAGE characters)."""
    lines = str(err).strip().splitlines()
    text = lines[0] if lines else ""
    if len(text) > MAX_MESSAGE:
        text = text[:MAX_MESSAGE] + "..."
    return f"{type(err).__name__}: {text}"


def _warn(what: str) -> Callable[[tenacity.RetryCallState], None]:
    """tenacity's ``before_sleep``: one warning line per failed attempt that will be retried."""
    def warn(state: tenacity.RetryCallState) -> None:
        err = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning("tracking call '%s' failed (%s); retrying in %.1f s",
                    what, one_line(err)[:300] if err else "?", wait)
    return warn


def with_retries(fn: Callable[[], T], what: str, retries: int, backoff_s: float,
                 where: str | None = None, hold_interrupts: bool = False) -> T:
    """Call ``fn``; on a transient exception wait backoff_s, 2 backoff_s, ... up to ``retries``
    more times (one warning line each), then raise TrackingError naming ``what`` and the last
    error. A permanent error (``is_permanent``) is raised at once: a TrackingConfigError or
    TrackingError as it is, any other as a TrackingRefused naming ``where`` (the store's URI,
    without credentials) when given. ``hold_interrupts``: Ctrl-C or SIGTERM during an attempt
    is raised when the attempt ends (a database's calls; tracking/interrupts.py)."""
    import tenacity

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(retries + 1),
        wait=tenacity.wait_exponential(multiplier=backoff_s, exp_base=2, min=0),
        retry=tenacity.retry_if_exception(_is_transient),
        before_sleep=_warn(what),
        reraise=True)  # the last error itself, not tenacity's RetryError

    def attempt() -> T:
        # an interrupt (Ctrl-C, SIGTERM) waits for the attempt to end, never for the back-off:
        # raised inside it, it would leave SQLite's write lock held (tracking/interrupts.py)
        with held():
            return fn()

    try:
        return retrying(attempt if hold_interrupts else fn)
    except (TrackingError, TrackingConfigError):
        raise
    except Exception as err:  # noqa: BLE001 - classified below
        if is_permanent(err):
            to = f" to {where}" if where else ""
            raise TrackingRefused(f"tracking call '{what}'{to} failed (not retried: the "
                                  f"same call would fail again): {one_line(err)}") from err
        attempts = retrying.statistics.get("attempt_number", retries + 1)
        raise TrackingError(f"tracking call '{what}' failed after {attempts} "
                            f"attempts: {one_line(err)}") from err
