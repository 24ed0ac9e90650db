"""Hydra sweeper ``hydra/sweeper=optuna``: a persistent, resumable Optuna study with pruning.

Hydra imports every public module of this package when it scans for plugins (in the driver
and in every job), so public modules import only Hydra/OmegaConf at import time; Optuna and
the sweep machinery live in ``_``-prefixed modules, which the scanner skips, and are imported
when a sweep starts.
"""
