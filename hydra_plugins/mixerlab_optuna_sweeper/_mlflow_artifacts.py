"""Results attached to the sweep's MLflow parent run, when another component created one.

That component writes ``<sweep dir>/.mlflow_parent_run.json`` (``tracking_uri``, ``run_id``).
MLflow problems never fail a finished sweep: they are logged as warnings.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

PARENT_RUN_FILE = ".mlflow_parent_run.json"

log = logging.getLogger(__name__)


def log_to_parent_run(sweep_dir: str, files: list[Path], summary: dict) -> bool:
    """Log ``files`` under ``optuna/`` and best-value tags; True if a parent run was found."""
    parent_file = Path(sweep_dir) / PARENT_RUN_FILE
    if not parent_file.exists():
        return False
    try:
        parent = json.loads(parent_file.read_text())
        from mlflow.tracking import MlflowClient  # lazy: mlflow is slow to import

        client = MlflowClient(parent["tracking_uri"])
        run_id = parent["run_id"]
        for path in files:
            client.log_artifact(run_id, str(path), "optuna")
        client.set_tag(run_id, "optuna.n_complete", str(summary["n_trials"]["COMPLETE"]))
        if summary.get("best_value") is not None:
            client.set_tag(run_id, "optuna.best_value", str(summary["best_value"]))
        if "pareto_front" in summary:
            client.set_tag(run_id, "optuna.pareto_front_size", str(len(summary["pareto_front"])))
        log.info("Optuna results logged to MLflow parent run %s", run_id)
    except Exception as err:  # noqa: BLE001 - results are on disk already; never fatal
        log.warning("Could not log Optuna results to the MLflow parent run: %s", err)
    return True
