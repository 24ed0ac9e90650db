"""Retry a tracking call with exponential back-off (a restarting server, a locked SQLite)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)
# conf/tracking/mlflow.yaml's tracking.retries / tracking.retry_backoff_s, for callers without a
# job config (the analysis scripts, the benchmarks)
DEFAULT_RETRIES = 6
DEFAULT_BACKOFF_S = 1.0


class TrackingError(RuntimeError):
    """A tracking call still failed after every retry."""


def with_retries(fn: Callable[[], T], what: str, retries: int, backoff_s: float) -> T:
    """Call ``fn``; on an exception wait backoff_s, 2 backoff_s, ... up to ``retries`` more
    times, then raise TrackingError naming ``what`` and the last error."""
    delay = backoff_s
    for attempt in range(retries + 1):
        try:
            return fn()
        except Exception as err:  # noqa: BLE001 - any transport/database error is retried
            if attempt == retries:
                raise TrackingError(
                    f"tracking call '{what}' failed after {retries + 1} attempts: "
                    f"{type(err).__name__}: {err}") from err
            log.warning("tracking call '%s' failed (%s: %s); retrying in %.1f s",
                        what, type(err).__name__, str(err).splitlines()[0][:200], delay)
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")
