"""The sweep layer: the task function, MLflow parent runs, run names and the Optuna reporter.

Importing it registers the config schema (sweep/config_schema.py) in Hydra's ConfigStore: Hydra
imports this package before it composes anything (its plugin scan imports hydra_plugins/, whose
sweepers import sweep.prelaunch), so every composition of conf/ has the schema.
"""

from sweep import config_schema  # noqa: F401 - registers the schema on import
