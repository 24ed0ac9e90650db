"""A trial that sleeps ``duration_s`` and returns ``(x - 2)^2``: for benchmarks/optuna_async.py
and tests/test_optuna_async.py.

It writes ``timing.json`` (``start``, ``end``: the task's own wall-clock span, Unix seconds) to
its job directory, so a worker's busy time can be told from its idle time. ``durations`` (a
list) gives trial k the duration ``durations[k]`` instead, and the trials in ``fail_trials``
raise after their sleep.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig


@hydra.main(config_path="conf", config_name="sleep", version_base="1.3")
def main(cfg: DictConfig) -> float:
    start = time.time()
    trial = cfg.optuna.trial
    time.sleep(float(cfg.durations[trial] if cfg.durations else cfg.duration_s))
    end = time.time()
    out = Path(HydraConfig.get().runtime.output_dir) / "timing.json"
    out.write_text(json.dumps({"start": start, "end": end}))
    if trial in cfg.fail_trials:
        raise RuntimeError(f"trial {trial} failed on purpose")
    return (float(cfg.x) - 2.0) ** 2


if __name__ == "__main__":
    main()
