"""Two objectives in conflict (Binh and Korn's problem): 4x^2 + 4y^2 and (x-5)^2 + (y-5)^2,
both minimized over 0 <= x <= 5, 0 <= y <= 3."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig


@hydra.main(config_path="conf", config_name="multi_objective", version_base="1.3")
def main(cfg: DictConfig) -> list[float]:
    x, y = float(cfg.x), float(cfg.y)
    return [4 * x**2 + 4 * y**2, (x - 5) ** 2 + (y - 5) ** 2]


if __name__ == "__main__":
    main()
