"""Trials a driver left unfinished: failed with a reason and re-enqueued, never silently lost.

Every trial this sweeper asks for carries the system attr ``driver`` = ``<host>:<pid>``. A trial
still RUNNING when a sweep starts belongs to a driver that was killed (SIGKILL, node failure),
unless that driver is a live process on this host (several drivers may share one study). Such
a trial is marked FAIL with ``fail_reason: driver interrupted`` and its parameters are enqueued
again, so the next batch reruns it. The same happens to the running batch when the driver
itself is interrupted (SIGINT/SIGTERM). A driver error (an exception, not an interruption)
fails its batch with ``fail_reason: driver error: ...`` and enqueues nothing: a rerun would
meet the same error, and no WAITING trial is left behind. Trials of live drivers on other
hosts cannot be told apart from dead ones: run concurrent drivers of one study on one host, or
on separate studies.
Each driver needs its own ``hydra.sweep.dir`` (one driver per sweep dir: sweep/dir_lock.py),
sharing the study through ``hydra.sweeper.storage=journal:///path/study.log``.
"""

from __future__ import annotations

import logging
import os
import socket

import optuna
from optuna.trial import FrozenTrial, TrialState

from ._trial_outcome import FAIL_REASON, TrialStore

DRIVER = "driver"
DRIVER_INTERRUPTED = "driver interrupted"
# prefix of the fail reason of a trial whose driver raised before its job could run
DRIVER_ERROR = "driver error: "
REQUEUED_FROM = "requeued_from"
BOOKKEEPING_ATTRS = {FAIL_REASON, REQUEUED_FROM}

log = logging.getLogger(__name__)


def this_driver() -> str:
    """The identity recorded on each trial this process asks for."""
    return f"{socket.gethostname()}:{os.getpid()}"


def claim_trial(store: TrialStore, trial: optuna.Trial) -> None:
    """Mark ``trial`` as launched by this driver."""
    store.set_system_attr(trial.number, DRIVER, this_driver())


def recover_stale_trials(study: optuna.Study, store: TrialStore) -> list[int]:
    """Fail and re-enqueue the RUNNING trials of dead drivers; returns their numbers."""
    stale = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
             if not _driver_alive(t.system_attrs.get(DRIVER))]
    for trial in stale:
        requeue(study, store, trial)
    if stale:
        log.warning(
            "Optuna: trials %s were left RUNNING by an interrupted driver; marked FAIL "
            "(fail_reason: %s) and their parameters re-enqueued",
            [t.number for t in stale], DRIVER_INTERRUPTED,
        )
    return [t.number for t in stale]


def requeue_unfinished(study: optuna.Study, store: TrialStore, numbers: list[int]) -> list[int]:
    """On interruption: fail and re-enqueue those of ``numbers`` that are still RUNNING."""
    requeued = []
    for number in numbers:
        trial = store.get(number)
        if trial.state == TrialState.RUNNING:
            requeue(study, store, trial)
            requeued.append(number)
    return requeued


def fail_unfinished(study: optuna.Study, store: TrialStore, numbers: list[int],
                    error: BaseException) -> list[int]:
    """On a driver error: fail those of ``numbers`` still RUNNING, without re-enqueueing them
    (the same error would meet the rerun)."""
    reason = f"{DRIVER_ERROR}{type(error).__name__}: {error}"
    failed = []
    for number in numbers:
        if store.get(number).state == TrialState.RUNNING:
            store.set_fail_reason(number, reason)
            study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
            failed.append(number)
    return failed


def requeue(study: optuna.Study, store: TrialStore, trial: FrozenTrial) -> None:
    """Mark ``trial`` FAIL (driver interrupted) and enqueue a copy of its parameters."""
    store.set_fail_reason(trial.number, DRIVER_INTERRUPTED)
    study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
    # fixed overrides are user attrs; keep them so the rerun shows the same record
    user_attrs = {k: v for k, v in trial.user_attrs.items() if k not in BOOKKEEPING_ATTRS}
    user_attrs[REQUEUED_FROM] = trial.number
    study.enqueue_trial(dict(trial.params), user_attrs=user_attrs)


def is_driver_failure(trial: FrozenTrial) -> bool:
    """A FAIL caused by the driver (interrupted or broken), not by its parameters."""
    reason = str(trial.system_attrs.get(FAIL_REASON, ""))
    return trial.state == TrialState.FAIL and (
        reason == DRIVER_INTERRUPTED or reason.startswith(DRIVER_ERROR))


def _driver_alive(driver: str | None) -> bool:
    if not driver or ":" not in driver:
        return False
    host, _, pid = driver.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True
