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

Ctrl-C (SIGINT, a plain ``KeyboardInterrupt``) ends a job the same way. Either way run_task
notes on the exception the one line that ends the command (``interrupted_line``): how the run
was closed and how to go on; run.py prints it (``closing_line``) instead of a traceback.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from tracking.interrupts import raise_when_safe

INTERRUPTED = "interrupted"  # how every closing line starts


class JobTerminated(KeyboardInterrupt):
    """The job received SIGTERM (scancel, time limit, requeue, preemption, kill)."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise JobTerminated(f"killed by {signal.Signals(signum).name} (scancel, a time limit, "
                        "requeue or preemption); rerun the same command to resume from the "
                        "last epoch checkpoint")


def _when_safe(handler: Callable[[int, FrameType | None], None]
               ) -> Callable[[int, FrameType | None], None]:
    """``handler``, whose exception waits for a running tracking call to end: raised inside
    one, it would leave SQLite's write lock held while the run is closed
    (tracking/interrupts.py)."""
    def run(signum: int, frame: FrameType | None) -> None:
        try:
            handler(signum, frame)
        except BaseException as interrupt:  # noqa: BLE001 - re-raised, maybe a moment later
            raise_when_safe(interrupt)
    return run


@contextmanager
def sigterm_raises(
    handler: Callable[[int, FrameType | None], None] = _raise_terminated,
) -> Iterator[None]:
    """Within the block, SIGTERM calls ``handler`` (default: raise ``JobTerminated``; the Optuna
    driver passes its own), main thread only; the previous handler (submitit's, or an Optuna
    driver's in-process one) is restored afterwards. The exception it raises, and Ctrl-C's
    KeyboardInterrupt (when SIGINT has Python's default handler), wait for a tracking call to
    end (``_when_safe``)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be installed from the main thread
        return
    previous = signal.signal(signal.SIGTERM, _when_safe(handler))
    previous_int = signal.getsignal(signal.SIGINT)
    if previous_int is signal.default_int_handler:
        signal.signal(signal.SIGINT, _when_safe(signal.default_int_handler))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        if previous_int is signal.default_int_handler:
            signal.signal(signal.SIGINT, previous_int)


def interrupted_line(err: KeyboardInterrupt, *, run_name: str, run_id: str | None, closed: bool,
                     tracking: bool, epoch: int, epochs: int, out_dir: Path, resumable: bool,
                     in_sweep: bool) -> str:
    """The line that ends a job stopped by ``err`` after ``epoch`` of ``epochs`` epochs: e.g.
    'interrupted: MLflow run sym-d2-w16-s0 (3f2a...) closed as KILLED after epoch 2 of 10; run
    the same command to resume at epoch 3 (checkpoint.pt in outputs/...)'. ``run_id``: None
    when no run was open in this process; ``closed``: the run's status was set; ``tracking``:
    tracking.enabled; ``resumable``: the checkpoint is written and read (trainer.checkpoint,
    trainer.resume)."""
    what = INTERRUPTED + (" by SIGTERM" if isinstance(err, JobTerminated) else "")
    if not tracking:
        run = f"job {run_name} stopped (tracking.enabled=false: nothing was logged to MLflow)"
    elif run_id is None:  # a data-parallel rank other than 0: rank 0 closes the run
        run = f"job {run_name} stopped (its MLflow run is rank 0's)"
    elif closed:
        run = f"MLflow run {run_name} ({run_id}) closed as KILLED"
    else:
        run = (f"MLflow run {run_name} ({run_id}) could not be closed as KILLED (the error "
               "is above; rerunning the job reopens it)")
    head = f"{what}: {run} after epoch {epoch} of {epochs}"
    if in_sweep:
        return f"{head}; its checkpoint and metrics.jsonl are in {out_dir}"
    if not resumable:
        return (f"{head}; no checkpoint is read or kept (trainer.checkpoint or trainer.resume "
                "is false), so the same command starts it again at epoch 1")
    if epoch == 0:
        return f"{head}; run the same command to start it again (no epoch had finished)"
    if epoch >= epochs:
        return (f"{head}; run the same command to log its results (checkpoint.pt in "
                f"{out_dir} holds every epoch)")
    return (f"{head}; run the same command to resume at epoch {epoch + 1} "
            f"(checkpoint.pt in {out_dir})")


def closing_line(err: KeyboardInterrupt) -> str:
    """The line to end a command stopped by ``err``: the one its job noted, else a general one
    (stopped before a job's tracking run was open, or in a sweep's driver)."""
    for note in reversed(getattr(err, "__notes__", None) or []):
        if note.startswith(INTERRUPTED):
            return note
    what = INTERRUPTED + (" by SIGTERM" if isinstance(err, JobTerminated) else "")
    return (f"{what}: stopped before training had started or between jobs; run the same "
            "command to start again (a job resumes from its last epoch checkpoint)")
