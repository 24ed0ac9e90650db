"""Interrupts held back while a tracking call runs, raised as soon as it returns.

Python runs a signal handler between two bytecodes of the main thread, wherever that thread is.
A handler that raises (SIGTERM's ``JobTerminated``, sweep/termination.py; Ctrl-C's
``KeyboardInterrupt``) can so raise inside SQLAlchemy right after MLflow wrote a row, while its
session holds SQLite's write lock. SQLAlchemy then invalidates the connection without closing it,
and the exception's traceback keeps it alive: the lock stays held while the job closes its run,
and every closing call waits out SQLite's 20 s busy timeout, retry after retry (a grid job sent
SIGTERM in CI took over a minute to exit, its run still RUNNING).

``held()`` marks one attempt of a tracking call to a database (``TrackingClient.call``; never
the back-off between attempts, so an interrupt there is raised at once; never a call to an HTTP
server, which holds no lock here and may hang up to MLflow's request timeout). A handler raises
through ``raise_when_safe``: at once outside a call, else when the call returns, its transaction
committed or rolled back; SQLite's busy timeout (20 s) bounds the wait. Main thread only:
handlers run nowhere else, and a call in another thread cannot be interrupted by one.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_depth = 0  # tracking calls the main thread is inside
_pending: BaseException | None = None  # the interrupt that arrived inside one


@contextmanager
def held() -> Iterator[None]:
    """Within the block (one tracking call), interrupts raised through ``raise_when_safe`` wait;
    the first of them is raised when the outermost block ends, whether or not it raised."""
    global _depth, _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _pending is not None:
            interrupt, _pending = _pending, None
            raise interrupt


def raise_when_safe(interrupt: BaseException) -> None:
    """Raise ``interrupt`` now, or (inside ``held()``) when the tracking call returns."""
    global _pending
    if _depth and threading.current_thread() is threading.main_thread():
        if _pending is None:
            _pending = interrupt
        return
    raise interrupt
