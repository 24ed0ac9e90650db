"""An app with a ``custom_search_space`` function: ``z`` is searched near the sampled ``x`` and
``+w`` adds a key the config does not have. ``fail_space_from=n`` makes the function raise
from trial ``n`` on (a driver error, not a job failure)."""

from __future__ import annotations

import hydra
import optuna
from omegaconf import DictConfig


def configure(cfg: DictConfig, trial: optuna.Trial) -> None:
    """Search z within ``max_z_difference_from_x`` of x, and w in [0, 1]."""
    if 0 <= int(cfg.fail_space_from) <= trial.number:
        raise RuntimeError(f"custom search space broken at trial {trial.number}")
    x = trial.params["x"]
    d = float(cfg.max_z_difference_from_x)
    trial.suggest_float("z", x - d, x + d)
    trial.suggest_float("+w", 0.0, 1.0)


@hydra.main(config_path="conf", config_name="custom_space", version_base="1.3")
def main(cfg: DictConfig) -> float:
    return float(cfg.x) ** 2 + float(cfg.y) ** 2 + float(cfg.z) ** 2 + float(cfg.w)


if __name__ == "__main__":
    main()
