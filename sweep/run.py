"""Train one configuration, or with -m a sweep of them.

    python sweep/run.py model=asym model.sb_lambda=1e-3 trainer.epochs=5
    python sweep/run.py -m model=asym model.sb_lambda=0,1e-4,1e-2,1 seed=0,1,2
    python sweep/run.py -m +experiment=search            # Optuna (hydra/sweeper=optuna)
    python sweep/run.py -m hydra/launcher=local_debug ... # SLURM through submitit
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python sweep/run.py` puts sweep/ on sys.path, not the project root: add it so the
# packages import the same way with or without an installed project.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from sweep.task import run_task  # noqa: E402


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | list[float]:
    return run_task(cfg)


if __name__ == "__main__":
    main()
