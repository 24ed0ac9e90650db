"""One owner per output dir: a sweep dir has one driver, a job's output dir one job.

Two sweeps started on the same ``hydra.sweep.dir`` (or two single jobs on the same
``hydra.run.dir``) would write into each other's MLflow runs, checkpoints and metrics.jsonl.
So each owner holds an exclusive lock on a file in its dir for as long as it runs:

* a sweep driver: ``<sweep dir>/.driver.lock`` (``DRIVER_LOCK``), taken by the ``DirLocks``
  Hydra callback in ``on_multirun_start``. conf/config.yaml lists it before ``mlflow_parent``
  (Hydra calls ``*_start`` callbacks in config order), so it runs before the sweep's MLflow
  parent run is created or reopened, before either sweeper (grid or Optuna) is set up and
  before any job launches;
* a job: ``<output dir>/.job.lock`` (``JOB_LOCK``). For a single run ``DirLocks.on_run_start``
  takes it before Hydra writes anything into ``hydra.run.dir`` (its ``.hydra/`` config
  copies); every job, a sweep's too (locally or on SLURM), takes it again in ``run_task``
  (``holding``) before its checkpoint is read: re-entrant in one process, so a single run
  holds it once.

Only rank 0 of a multi-process driver or job (``torchrun``, ``srun``) locks: all ranks share
its dirs.

A second owner is refused at once with one line naming the dir, the holder (pid, host and
start time, which the holder writes into the lock file) and what to do (``DirInUse``, exit
status 2 as any user error). Hydra turns an exception raised by a callback into a warning and
carries on, so ``DirLocks`` prints the line and exits with ``SystemExit`` instead: nothing
written, no job launched, no MLflow run touched. A sweep's job refused in ``run_task`` fails
like any failed job (failed_jobs.yaml, an Optuna FAIL trial).

The lock is ``flock(LOCK_EX | LOCK_NB)`` on a file descriptor kept open while the owner runs.
The kernel drops it when the process ends in any way (return, exception, SIGKILL, an
out-of-memory kill), so a crash never leaves a stale lock: the file stays, naming the dead
holder, and the next owner takes the lock and rewrites it. There is nothing to clean up by
hand. The descriptor is not inherited across ``exec``; a child forked without ``exec`` shares
it until it exits (it is part of the same job).

Across machines (SLURM jobs, a driver requeued onto another node) the lock is as good as the
shared file system's ``flock``. Local disks: exact. NFS: Linux clients emulate ``flock`` with
NFS byte-range locks, seen by every client; the server drops a crashed client's locks when
its lease expires (NFSv4, 90 s by default) or when the client reboots (NFSv3). Mounts with
``local_lock=flock`` (NFS) or ``localflock`` (Lustre) lock per node only, so two owners on
different nodes are not detected there. Where ``flock`` is refused (Lustre without the
``flock`` mount option, some FUSE file systems) the owner runs unlocked after a warning.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from training.distributed import detect

DRIVER_LOCK = ".driver.lock"
JOB_LOCK = ".job.lock"
EXIT_IN_USE = 2  # the exit status of every user error (sweep/user_errors.py)
# errors of a file system that cannot flock at all (as opposed to "already locked")
_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
log = logging.getLogger(__name__)


class DirInUse(RuntimeError):
    """Another live process owns the dir."""

    user_error = True  # the user's to fix: shown as one line (sweep/user_errors.py)


@dataclass
class _Held:
    fd: int | None  # None: the file system cannot lock; held in name only
    count: int = 1


_HELD: dict[str, _Held] = {}  # lock file (real path) -> this process's hold on it


def _holder(fd: int) -> str:
    """The holder as it described itself in the lock file: 'pid N on host H since T'."""
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        return f"pid {info['pid']} on host {info['host']} since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown: it has not written the lock file yet"


def acquire(lock_file: Path, label: str, owner: str, setting: str) -> None:
    """Lock ``lock_file`` for this process until ``release`` (or the process's end).

    Re-entrant: a second ``acquire`` of the same file in this process only counts. Raises
    DirInUse, "<label> is in use by another <owner> (pid N on host H since T); wait for it to
    end, or choose another <setting>", when another process holds it.
    """
    key = os.path.realpath(lock_file)
    if key in _HELD:
        _HELD[key].count += 1
        return
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)  # no O_TRUNC: the holder's record
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise DirInUse(f"{label} is in use by another {owner} ({holder}); wait for it to end, "
                       f"or choose another {setting}") from None
    except OSError as err:
        os.close(fd)
        if err.errno not in _UNSUPPORTED:
            raise
        log.warning("cannot lock %s (%s: the file system does not support flock): a second "
                    "%s on this dir would not be detected", lock_file, err.strerror, owner)
        _HELD[key] = _Held(None)
        return
    record = {"pid": os.getpid(), "host": socket.gethostname(),
              "since": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
    os.fsync(fd)  # so that a contender on another node of a shared file system can read it
    _HELD[key] = _Held(fd)


def release(lock_file: Path) -> None:
    """Undo one ``acquire`` of ``lock_file`` by this process; the last one unlocks it (the
    file stays: a lock file is never deleted, which would race with a new owner)."""
    key = os.path.realpath(lock_file)
    held = _HELD.get(key)
    if held is None:
        return
    held.count -= 1
    if held.count == 0:
        del _HELD[key]
        if held.fd is not None:
            os.close(held.fd)  # closing the last descriptor unlocks


@contextmanager
def holding(lock_file: Path, label: str, owner: str, setting: str) -> Iterator[None]:
    """``acquire`` for the duration of the block."""
    acquire(lock_file, label, owner, setting)
    try:
        yield
    finally:
        release(lock_file)


class DirLocks(Callback):
    """Hydra callback: the driver holds its sweep dir, a single run its ``hydra.run.dir``, from
    their start to their end (or the process's)."""

    @staticmethod
    def _lock_file(config: DictConfig, multirun: bool) -> Path:
        run_dir = config.hydra.sweep.dir if multirun else config.hydra.run.dir
        return Path(os.path.abspath(str(run_dir))) / (DRIVER_LOCK if multirun else JOB_LOCK)

    def _start(self, config: DictConfig, multirun: bool) -> None:
        if detect()[1] != 0:  # `torchrun ...`: rank 0 owns the dirs of all ranks
            return
        lock_file = self._lock_file(config, multirun)
        setting = "hydra.sweep.dir" if multirun else "hydra.run.dir"
        try:
            acquire(lock_file, f"{setting}={lock_file.parent}",
                    "sweep driver" if multirun else "job", setting)
        except DirInUse as err:
            # a callback's exception would only be a warning (Hydra goes on): exit instead,
            # as any user error does (one line, status 2: sweep/user_errors.py)
            print(err, file=sys.stderr)
            raise SystemExit(EXIT_IN_USE) from None

    def _end(self, config: DictConfig, multirun: bool) -> None:
        if detect()[1] != 0:
            return
        release(self._lock_file(config, multirun))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._start(config, multirun=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._end(config, multirun=True)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._start(config, multirun=False)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._end(config, multirun=False)
