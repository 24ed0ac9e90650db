"""What a finished job means for its trial: COMPLETE, PRUNED or FAIL, and telling the study.

A job's ``JobReturn`` has ``status`` COMPLETED (``return_value`` is the task's return value) or
FAILED (the exception is kept in ``JobReturn._return_value``). Both the basic launcher
(in-process) and the submitit launchers (the ``JobReturn`` is pickled back from the job
process) deliver a task's exception this way; a job that dies before Hydra can catch anything
(killed, out of memory) makes the submitit launcher raise from ``launch`` instead, which the
sweep loop turns into FAIL outcomes for the whole batch.

Trial attributes are written through the storage object the sweeper opened itself
(``TrialStore``): ``optuna.Trial`` can set user attrs but not system attrs, and a trial left
by another driver is only a ``FrozenTrial``, which cannot set either.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from hydra.core.utils import JobReturn, JobStatus
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

FAIL_REASON = "fail_reason"


class TrialStore:
    """The trials of one study, addressed by number, through the public ``BaseStorage``
    interface of the storage object the study was created with."""

    def __init__(self, storage: BaseStorage, study_name: str) -> None:
        self.storage = storage
        self.study_id = storage.get_study_id_from_name(study_name)

    def trial_id(self, number: int) -> int:
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)

    def get(self, number: int) -> FrozenTrial:
        """The trial's current record, read from the storage (not a cached copy)."""
        return self.storage.get_trial(self.trial_id(number))

    def set_system_attr(self, number: int, key: str, value: Any) -> None:
        self.storage.set_trial_system_attr(self.trial_id(number), key, value)

    def set_fail_reason(self, number: int, reason: str) -> None:
        """``fail_reason`` as a user attr (shown in trials.csv) and as a system attr."""
        trial_id = self.trial_id(number)
        self.storage.set_trial_user_attr(trial_id, FAIL_REASON, reason)
        self.storage.set_trial_system_attr(trial_id, FAIL_REASON, reason)


@dataclass(frozen=True)
class TrialOutcome:
    """The state to tell, the objective values (COMPLETE only) and why a trial failed."""

    state: TrialState
    values: list[float] | None = None
    reason: str | None = None


def outcome_of(ret: JobReturn, n_objectives: int) -> TrialOutcome:
    """Classify one job's result; never raises."""
    if ret.status != JobStatus.COMPLETED:
        # private on purpose: the public return_value re-raises a failed job's exception after
        # writing "Error executing job" to stderr, which is wrong for a pruned trial (pinned by
        # tests/test_private_api_pins.py)
        error = ret._return_value
        if isinstance(error, optuna.TrialPruned):
            return TrialOutcome(TrialState.PRUNED, reason=str(error) or None)
        return TrialOutcome(TrialState.FAIL, reason=_describe(error))
    return _values_outcome(ret.return_value, n_objectives)


def _values_outcome(value: Any, n_objectives: int) -> TrialOutcome:
    try:
        if n_objectives == 1:
            values = [float(value)]
        else:
            values = [float(v) for v in value]
    except (TypeError, ValueError):
        expected = "a float" if n_objectives == 1 else f"a list of {n_objectives} floats"
        return TrialOutcome(
            TrialState.FAIL, reason=f"the task returned {value!r}; expected {expected}"
        )
    if len(values) != n_objectives:
        return TrialOutcome(
            TrialState.FAIL,
            reason=f"the task returned {len(values)} values for {n_objectives} objectives",
        )
    if not all(math.isfinite(v) for v in values):
        # Optuna cannot rank NaN/inf; the stock plugin crashed here (hydra #2237)
        return TrialOutcome(TrialState.FAIL, reason=f"the task returned non-finite {value!r}")
    return TrialOutcome(TrialState.COMPLETE, values=values)


def _describe(error: Any) -> str:
    if isinstance(error, BaseException):
        return f"{type(error).__name__}: {error}"
    return f"job failed: {error!r}"


def tell_outcome(study: optuna.Study, store: TrialStore, trial: optuna.Trial,
                 outcome: TrialOutcome) -> None:
    """Record ``outcome``; a PRUNED trial keeps its last reported value as its value."""
    if outcome.state == TrialState.FAIL and outcome.reason:
        store.set_fail_reason(trial.number, outcome.reason)
    try:
        # skip_if_finished: the trial may have been finished meanwhile by another driver
        # sharing the storage (e.g. declared stale); its state then stands
        study.tell(trial, values=outcome.values, state=outcome.state, skip_if_finished=True)
    except RuntimeError as err:
        # GridSampler calls study.stop() once the grid is exhausted, which raises outside
        # study.optimize; the trial's state is stored before that (in a finally block)
        if "Study.stop" not in str(err):
            raise


def count_states(trials: Sequence[optuna.trial.FrozenTrial]) -> dict[str, int]:
    """Number of trials per state name, for every state (zeros included)."""
    counts = {state.name: 0 for state in TrialState}
    for trial in trials:
        counts[trial.state.name] += 1
    return counts
