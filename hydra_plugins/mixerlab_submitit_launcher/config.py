"""`hydra/launcher=submitit_slurm` and `submitit_local` select this package's launchers.

The plugin registers its configs when Hydra's plugin scan imports its config module, and the
scan runs (and re-runs) every plugin module in path order, so a config stored by a module of
ours could be overwritten by the plugin's afterwards. Hydra calls SearchPathPlugins after the
scan and before any config is composed: that is where ours replace the plugin's. Every key,
default and the schema stay the plugin's; only ``_target_`` changes.
"""
# No `from __future__ import annotations`: Hydra reads these dataclasses' field types.

from dataclasses import dataclass

from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.config_store import ConfigStore
from hydra.plugins.search_path_plugin import SearchPathPlugin
from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf, SlurmQueueConf

_HERE = "hydra_plugins.mixerlab_submitit_launcher.launcher"


@dataclass
class EveryJobSlurmConf(SlurmQueueConf):
    _target_: str = f"{_HERE}.SlurmLauncher"


@dataclass
class EveryJobLocalConf(LocalQueueConf):
    _target_: str = f"{_HERE}.LocalLauncher"


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
