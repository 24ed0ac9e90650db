"""The sweep layer: the task function, MLflow parent runs, run names and the Optuna reporter."""
