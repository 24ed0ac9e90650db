"""SIGTERM handled like Ctrl-C while a sweep runs, so ``finally`` blocks get to clean up.

Python's default SIGTERM action ends the process at once; schedulers (SLURM at a time limit,
``kill``) send SIGTERM, and the driver must first fail and re-enqueue its running batch.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class DriverTerminated(KeyboardInterrupt):
    """Raised in the driver by SIGTERM (a KeyboardInterrupt, so generic handlers pass it on)."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise DriverTerminated(f"signal {signal.Signals(signum).name}")


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises ``DriverTerminated`` (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be installed from the main thread
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
