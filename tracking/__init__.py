"""Experiment tracking: the only package that talks to MLflow.

* ``tracker``: the Tracker interface the training loop logs to (and NullTracker);
* ``mlflow_tracker``: its MLflow implementation, one job's run;
* ``client``: the one way to get an MLflow client (SQLite creation lock, retries), URIs;
* ``retry``: the retry policy (exponential back-off, TrackingError);
* ``interrupts``: Ctrl-C and SIGTERM held back while a tracking call runs (SQLite's lock);
* ``uri``: whether a tracking setting can work (URI form, writable store, server reachable);
* ``secrets``: credentials out of URIs, records and logs (redaction, the environment);
* ``parent_run``: a sweep's parent run and its side file in the sweep dir;
* ``run_store``: runs, metric histories and artifacts for the analysis;
* ``source_tags``, ``system_metrics``, ``dataset_input``, ``logged_model``: what a job's run
  holds as MLflow users expect it (source, system metrics, dataset inputs, the model and
  ``load_pyfunc``, its loader that never unpickles);
* ``optuna_storage``: where an Optuna study lives (the sweeper, the jobs and the analysis).

The names below are imported on first use, so that ``tracking.tracker`` or
``tracking.optuna_storage`` do not import MLflow (slow to import).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tracking.client import default_tracking_uri, resolve_tracking_uri
    from tracking.logged_model import load_pyfunc
    from tracking.mlflow_tracker import MlflowTracker
    from tracking.retry import TrackingError
    from tracking.tracker import NullTracker, Tracker

_HOME = {"MlflowTracker": "tracking.mlflow_tracker", "NullTracker": "tracking.tracker",
         "Tracker": "tracking.tracker", "TrackingError": "tracking.retry",
         "default_tracking_uri": "tracking.client", "resolve_tracking_uri": "tracking.client",
         "load_pyfunc": "tracking.logged_model"}
__all__ = ["MlflowTracker", "NullTracker", "Tracker", "TrackingError", "default_tracking_uri",
           "load_pyfunc", "resolve_tracking_uri"]


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'tracking' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOME[name]), name)
