"""A migrated stock-plugin user's app: minimize x^2 + y^2 (``hydra.sweeper.params`` in its
config), with ``z`` a key the user may delete (``~z``) and ``error=true`` to fail every job."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig


@hydra.main(config_path="conf", config_name="sphere", version_base="1.3")
def main(cfg: DictConfig) -> float:
    if cfg.error:
        raise RuntimeError(f"sphere failed on purpose at x={cfg.x}")
    return float(cfg.x) ** 2 + float(cfg.y) ** 2


if __name__ == "__main__":
    main()
