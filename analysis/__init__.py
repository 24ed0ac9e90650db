"""Figures and tables of the paper from the runs logged to MLflow.

Notebook use::

    from analysis import load_runs
    tables = load_runs("sqlite:///mlflow.db", "model_comparison")
    tables.runs      # one row per job: params.*, metrics.*, tags.*, status + typed columns
    tables.epochs    # long table: run_id, epoch, metric, value

The command line (``python analysis/make_figures.py``) draws every figure whose runs exist.
"""

from analysis.load_runs import NoRunsError, RunTables, load_runs

__all__ = ["NoRunsError", "RunTables", "load_runs"]
