"""`hydra/launcher=submitit_slurm` and `submitit_local` select this package's launchers.

The plugin registers its configs when Hydra's plugin scan imports its config module, and the
scan runs (and re-runs) every plugin module in path order, so a config stored by a module of
ours could be overwritten by the plugin's afterwards. Hydra calls SearchPathPlugins after the
scan and before any config is composed: that is where ours replace the plugin's. Every key,
default and the schema stay the plugin's; ``_target_`` changes and two keys are added:
``poll_interval_s`` and ``result_grace_s``, how soon the driver notices a job's end
(launcher.py).
"""
# No `from __future__ import annotations`: Hydra reads these dataclasses' field types.

from dataclasses import dataclass
from typing import Optional

from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.config_store import ConfigStore
from hydra.plugins.search_path_plugin import SearchPathPlugin
from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf, SlurmQueueConf

_HERE = "hydra_plugins.mixerlab_submitit_launcher.launcher"


# seconds between two looks for finished jobs: a finished job is noticed within about this
# long; null leaves the waiting to submitit (see launcher.py)
POLL_INTERVAL_S = 1.0
# submitit_local: a look is a process poll and a file check, no scheduler call, so it looks
# 10x as often: with short trials the 0.5 s average wait showed as idle workers
LOCAL_POLL_INTERVAL_S = 0.1
# seconds a job that SLURM reports ended may take to show its result file (submitit's 15)
RESULT_GRACE_S = 15.0


@dataclass
class EveryJobSlurmConf(SlurmQueueConf):
    _target_: str = f"{_HERE}.SlurmLauncher"
    poll_interval_s: Optional[float] = POLL_INTERVAL_S  # noqa: UP045 - Hydra reads the type
    result_grace_s: float = RESULT_GRACE_S


@dataclass
class EveryJobLocalConf(LocalQueueConf):
    _target_: str = f"{_HERE}.LocalLauncher"
    poll_interval_s: Optional[float] = LOCAL_POLL_INTERVAL_S  # noqa: UP045 - Hydra reads the type
    result_grace_s: float = RESULT_GRACE_S


def register() -> None:
    cs = ConfigStore.instance()
    for name, node in (("submitit_slurm", EveryJobSlurmConf()),
                       ("submitit_local", EveryJobLocalConf())):
        cs.store(group="hydra/launcher", name=name, node=node,
                 provider="mixerlab_submitit_launcher")


class EveryJobLauncherConfigs(SearchPathPlugin):
    """Adds no search path; runs ``register()`` once the plugin scan is over."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        register()
