"""Which trials count towards ``n_trials`` and towards the failure rate.

``n_trials`` is the study's total target, not a per-run increment: a rerun of the same command
launches only what is missing. A trial counts once it has a verdict about its parameters:
COMPLETE, PRUNED, or FAIL caused by the job (exception, NaN, bad return value). A FAIL with
``fail_reason: driver interrupted`` does not count, because its parameters were enqueued again
and the rerun counts instead. The failure rate is the fraction of counted trials that FAILed.
"""

from __future__ import annotations

from collections.abc import Sequence

from optuna.trial import FrozenTrial, TrialState

from ._stale_trials import is_requeued_failure

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def counted_trials(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The trials that use up the ``n_trials`` budget."""
    return [t for t in trials if t.state in _FINISHED and not is_requeued_failure(t)]


def failure_rate(trials: Sequence[FrozenTrial]) -> tuple[int, int]:
    """(failed, counted) over the counted trials."""
    counted = counted_trials(trials)
    return sum(t.state == TrialState.FAIL for t in counted), len(counted)
