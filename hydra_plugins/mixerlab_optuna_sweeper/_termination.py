"""SIGTERM handled like Ctrl-C while a sweep runs, so ``finally`` blocks get to clean up.

Python's default SIGTERM action ends the process at once; schedulers (SLURM at a time limit,
``kill``) send SIGTERM, and the driver must first fail and re-enqueue its running batch.
"""

from __future__ import annotations

import signal
from contextlib import AbstractContextManager
from types import FrameType

from sweep.termination import sigterm_raises


class DriverTerminated(KeyboardInterrupt):
    """Raised in the driver by SIGTERM (a KeyboardInterrupt, so generic handlers pass it on)."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise DriverTerminated(f"signal {signal.Signals(signum).name}")


def sigterm_as_interrupt() -> AbstractContextManager[None]:
    """Within the block, SIGTERM raises ``DriverTerminated`` (main thread only)."""
    return sigterm_raises(_raise_terminated)
