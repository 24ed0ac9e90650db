"""What a finished job means for its trial: COMPLETE, PRUNED or FAIL, and telling the study.

A job's ``JobReturn`` has ``status`` COMPLETED (``_return_value`` is the task's return value) or
FAILED (``_return_value`` is the exception). We read ``_return_value`` directly, because the
public ``return_value`` property re-raises the exception of a failed job. Both the basic
launcher (in-process) and the submitit launchers (the ``JobReturn`` is pickled back from the
job process) deliver a task's exception this way; a job that dies before Hydra can catch
anything (killed, out of memory) makes the submitit launcher raise from ``launch`` instead,
which the sweep loop turns into FAIL outcomes for the whole batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from hydra.core.utils import JobReturn, JobStatus
from optuna.trial import TrialState

FAIL_REASON = "fail_reason"


@dataclass(frozen=True)
class TrialOutcome:
    """The state to tell, the objective values (COMPLETE only) and why a trial failed."""

    state: TrialState
    values: list[float] | None = None
    reason: str | None = None


def outcome_of(ret: JobReturn, n_objectives: int) -> TrialOutcome:
    """Classify one job's result; never raises."""
    if ret.status != JobStatus.COMPLETED:
        error = ret._return_value
        if isinstance(error, optuna.TrialPruned):
            return TrialOutcome(TrialState.PRUNED, reason=str(error) or None)
        return TrialOutcome(TrialState.FAIL, reason=_describe(error))
    return _values_outcome(ret._return_value, n_objectives)


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


def set_fail_reason(study: optuna.Study, trial_id: int, reason: str) -> None:
    """Store ``fail_reason`` as a user attr (shown in trials.csv) and as a system attr."""
    study._storage.set_trial_user_attr(trial_id, FAIL_REASON, reason)
    study._storage.set_trial_system_attr(trial_id, FAIL_REASON, reason)


def tell_outcome(study: optuna.Study, trial: optuna.Trial, outcome: TrialOutcome) -> None:
    """Record ``outcome``; a PRUNED trial keeps its last reported value as its value."""
    if outcome.state == TrialState.FAIL and outcome.reason:
        set_fail_reason(study, trial._trial_id, outcome.reason)
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
