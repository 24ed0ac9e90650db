"""Checks of ``hydra.sweeper.sampler`` that must fail before a study is opened or a trial asked.

* ``optuna.samplers.MOTPESampler`` (``hydra/sweeper/sampler=motpe``, kept so that a migrated
  config gets this message rather than Hydra's "Could not find"): removed in Optuna 4, whose
  ``TPESampler`` handles several objectives itself.
* a sampler whose optional dependency is missing (``CmaEsSampler`` imports ``cmaes`` only when
  it first samples, i.e. at the second batch, after trials were asked): one line naming the
  package to install.
"""

from __future__ import annotations

import importlib.util

import optuna
from hydra.utils import get_class
from omegaconf import DictConfig

from .optuna_sweeper import SweeperSettingError

REMOVED_MOTPE = "optuna.samplers.MOTPESampler"
# sampler class -> the modules it imports lazily (Optuna's optional dependencies)
OPTIONAL_MODULES: dict[str, tuple[str, ...]] = {
    "CmaEsSampler": ("cmaes",),
    "GPSampler": ("scipy", "torch"),
    "QMCSampler": ("scipy",),
}
# module -> the pip package that provides it
_PIP_NAME = {"cmaes": "cmaes", "scipy": "scipy", "torch": "torch"}


def check_sampler(cfg: DictConfig | None) -> None:
    """Raise ``SweeperSettingError`` for a removed sampler or a missing optional dependency."""
    if cfg is None:
        return
    target = str(cfg.get("_target_"))
    if target.rsplit(".", 1)[-1] == "MOTPESampler":
        raise SweeperSettingError(
            f"hydra.sweeper.sampler._target_={target}: MOTPESampler was removed in Optuna 4; "
            "use hydra/sweeper/sampler=tpe (TPESampler optimizes several objectives itself) "
            "or hydra/sweeper/sampler=nsgaii")
    try:
        cls = get_class(target)
    except (ImportError, ValueError):
        return  # not a class: instantiate() names the bad _target_
    for name, modules in OPTIONAL_MODULES.items():
        base = getattr(optuna.samplers, name, None)
        if base is None or not issubclass(cls, base):
            continue
        missing = [m for m in modules if importlib.util.find_spec(m) is None]
        if missing:
            packages = " ".join(_PIP_NAME[m] for m in missing)
            extra = " (or pip install -e '.[optuna-extra]')" if missing == ["cmaes"] else ""
            raise SweeperSettingError(
                f"hydra.sweeper.sampler={target} needs the package(s) {', '.join(missing)}, "
                f"which are not installed: pip install {packages}{extra}")
