"""A trial that sleeps ``duration_s`` and returns ``(x - 2)^2``: for benchmarks/optuna_async.py
and tests/test_optuna_async.py.

It writes ``timing.json`` (``start``, ``end``: the task's own wall-clock span, Unix seconds) to
its job directory, so a worker's busy time can be told from its idle time. ``durations`` (a
list) gives trial k the duration ``durations[k]`` instead, and the trials in ``fail_trials``
raise after their sleep. With ``linger_s`` > 0 the job's process stays ``linger_s`` after the
task returned (an exit handler, as a process that loaded torch and MLflow takes seconds to
exit), then writes ``exited.json`` (``at``: Unix seconds).
"""

from __future__ import annotations

import atexit
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
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    (out_dir / "timing.json").write_text(json.dumps({"start": start, "end": end}))
    if cfg.linger_s:
        atexit.register(_linger, float(cfg.linger_s), out_dir / "exited.json")
    if trial in cfg.fail_trials:
        raise RuntimeError(f"trial {trial} failed on purpose")
    return (float(cfg.x) - 2.0) ** 2


def _linger(seconds: float, marker: Path) -> None:
    time.sleep(seconds)
    marker.write_text(json.dumps({"at": time.time()}))


if __name__ == "__main__":
    main()
