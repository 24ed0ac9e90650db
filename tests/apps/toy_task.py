"""A fast stand-in for a training job, to exercise the Optuna sweeper end to end.

The value at epoch ``e`` approaches ``(x - 2)^2 + y + cost(c)`` (halving the gap each epoch);
with ``learn=false`` it stays 100 above it, which a median pruner cuts short.
"""

from __future__ import annotations

import time

import hydra
from omegaconf import DictConfig

from sweep.trial_reporter import TrialReporter

CATEGORY_COST = {"a": 0.0, "b": 0.5, "c": 1.0}


def objective(cfg: DictConfig) -> float:
    """The value a fully trained toy model reaches."""
    return (float(cfg.x) - 2.0) ** 2 + int(cfg.y) + CATEGORY_COST[str(cfg.c)]


@hydra.main(config_path="conf", config_name="toy", version_base="1.3")
def main(cfg: DictConfig) -> float | list[float]:
    """Report one value per epoch, then return the last (or two objectives)."""
    time.sleep(float(cfg.sleep_s))
    if cfg.crash:
        raise RuntimeError("toy task crashed on purpose")
    reporter = TrialReporter.from_config(cfg)
    target = objective(cfg)
    value = target
    for epoch in range(int(cfg.epochs)):
        value = target + (10.0 * 0.5**epoch if cfg.learn else 100.0)
        if reporter is not None:
            reporter.report(value, step=epoch)
    if cfg.return_nan:
        return float("nan")
    if cfg.multi_objective:
        # a trade-off: the second objective prefers x = -2
        return [value, (float(cfg.x) + 2.0) ** 2 + int(cfg.y)]
    return value


if __name__ == "__main__":
    main()
