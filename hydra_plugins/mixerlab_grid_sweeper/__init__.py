"""The project's default grid sweeper (Hydra's basic sweeper, made sweep-safe)."""
