"""The end of a sweep: best parameters (or Pareto front) logged, results and trials saved.

``<sweep dir>/optimization_results.yaml`` has the stock plugin's keys with their meaning:
``name: optuna``, then ``best_params`` (the best trial's searched params, as Optuna returns
them) and ``best_value`` for one objective, or ``solutions`` (the Pareto front, each
``{params, values}``) for several. Extras: the study's identity and directions,
``best_trial`` (its number), ``fixed_params`` (the fixed overrides, as text), ``pareto_front``
(the solutions with their trial numbers and fixed params) and the number of trials per state.
``<sweep dir>/trials.csv`` is ``study.trials_dataframe()``.
Both pass through ``tracking.secrets.redact``: the storage URL never carries a password
(tracking/optuna_storage.py), nor does any URL among the trials' params and attrs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from tracking.secrets import redact

from ._stale_trials import BOOKKEEPING_ATTRS
from ._trial_outcome import count_states

RESULTS_FILE = "optimization_results.yaml"
TRIALS_FILE = "trials.csv"

log = logging.getLogger(__name__)


def study_summary(study: optuna.Study, storage_url: str, overhead_ms: float | None) -> dict:
    """What optimization_results.yaml holds."""
    trials = study.get_trials(deepcopy=False)
    summary: dict[str, Any] = {
        "name": "optuna",
        "study_name": study.study_name,
        "storage": redact(storage_url),
        "directions": [d.name.lower() for d in study.directions],
    }
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if len(study.directions) == 1:
        best = study.best_trial if complete else None
        summary["best_params"] = dict(best.params) if best else {}
        summary["best_value"] = best.value if best else None
        summary["best_trial"] = best.number if best else None
        summary["fixed_params"] = _fixed_params(best) if best else {}
    else:
        front = study.best_trials if complete else []
        summary["solutions"] = [{"params": dict(t.params), "values": list(t.values)}
                                for t in front]
        summary["pareto_front"] = [
            {"number": t.number, "values": list(t.values), "params": _all_params(t)}
            for t in front
        ]
    summary["n_trials"] = count_states(trials)
    if overhead_ms is not None:
        summary["sweeper_overhead_ms_per_trial"] = round(overhead_ms, 2)
    return summary


def _fixed_params(trial: FrozenTrial) -> dict[str, Any]:
    """The fixed overrides recorded on the trial (as user attrs)."""
    return {k: v for k, v in trial.user_attrs.items() if k not in BOOKKEEPING_ATTRS}


def _all_params(trial: FrozenTrial) -> dict[str, Any]:
    """Sampled params plus the fixed overrides recorded on the trial."""
    return {**trial.params, **_fixed_params(trial)}


def write_results(study: optuna.Study, summary: dict, sweep_dir: str) -> list[Path]:
    """Write optimization_results.yaml and trials.csv; returns their paths."""
    out = Path(sweep_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = out / RESULTS_FILE
    results.write_text(redact(yaml.safe_dump(_plain(summary), sort_keys=False)))
    trials = out / TRIALS_FILE
    trials.write_text(redact(study.trials_dataframe().to_csv(index=False)))
    return [results, trials]


def log_summary(summary: dict) -> None:
    """Best params and value, or the Pareto front, on the console."""
    log.info("Optuna study '%s': trials by state %s", summary["study_name"],
             {k: v for k, v in summary["n_trials"].items() if v})
    if "solutions" in summary:
        log.info("Pareto front (%d trials, directions %s):", len(summary["pareto_front"]),
                 summary["directions"])
        for trial in summary["pareto_front"]:
            log.info("  trial %d: values=%s params=%s", trial["number"], trial["values"],
                     trial["params"])
    elif summary["best_trial"] is None:
        log.info("No trial completed: no best parameters")
    else:
        log.info("Best trial %d: value=%s", summary["best_trial"], summary["best_value"])
        log.info("Best parameters: %s", summary["best_params"])


def _plain(value: Any) -> Any:
    """YAML-safe copy: numpy scalars and tuples become Python floats/ints and lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if hasattr(value, "item"):
        return value.item()
    return str(value)
