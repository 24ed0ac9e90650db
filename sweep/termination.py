"""SIGTERM inside a training job: close its tracking run as KILLED instead of leaving it RUNNING.

``scancel``, a SLURM time limit, ``scontrol requeue``, preemption and ``kill`` all send SIGTERM
(then SIGKILL KillWait seconds later). Python's default action would end the process at once,
and submitit ignores SIGTERM ("Bypassing signal SIGTERM") until the SIGKILL arrives; either
way the job's MLflow run would stay RUNNING forever. While a job runs, SIGTERM raises
``JobTerminated`` (a ``KeyboardInterrupt``, so no ``except Exception`` swallows it and submitit
writes no result for a requeued job): run_task closes the run as KILLED with an ``error`` tag
and the job exits. A requeued or rerun job resumes from its last epoch checkpoint and reopens
the same run. SIGKILL cannot be caught: the sweep driver marks such runs FAILED when the sweep
ends (sweep.mlflow_parent.fail_orphaned_runs).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType


class JobTerminated(KeyboardInterrupt):
    """The job received SIGTERM (scancel, time limit, requeue, preemption, kill)."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise JobTerminated(f"killed by {signal.Signals(signum).name} (scancel, a time limit, "
                        "requeue or preemption); rerun the same command to resume from the "
                        "last epoch checkpoint")


@contextmanager
def sigterm_raises(
    handler: Callable[[int, FrameType | None], None] = _raise_terminated,
) -> Iterator[None]:
    """Within the block, SIGTERM calls ``handler`` (default: raise ``JobTerminated``; the Optuna
    driver passes its own), main thread only; the previous handler (submitit's, or an Optuna
    driver's in-process one) is restored afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be installed from the main thread
        return
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
