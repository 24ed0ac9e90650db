"""Refuse an output dir that cannot be created or written, before Hydra creates it (and a
config that holds a password, before Hydra copies it into that dir).

Hydra makes a job's dir (``hydra.run.dir``) in ``run_job`` and a sweeper makes the sweep's
(``hydra.sweep.dir``) before its first launch; either fails with an ``OSError`` traceback and,
for a sweep, after its MLflow parent run was opened. The ``OutputDirCheck`` callback (first in
``hydra.callbacks``, conf/config.yaml) probes the dir when the run or sweep starts, creating
nothing: a temporary folder is made and removed in the dir, or in its nearest existing parent
when the dir does not exist yet.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from sweep.user_errors import Refused, UserError
from sweep.validate import password_errors


class OutputDirError(UserError):
    """An output dir that cannot be created or written."""


def dir_problem(path: Path) -> str | None:
    """Why ``path`` cannot be created or written (an OSError's reason), or None when it can."""
    path = Path(os.path.abspath(path))
    probe = path
    while not probe.exists() and not probe.is_symlink() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is not a directory"
    try:
        os.rmdir(tempfile.mkdtemp(dir=probe, prefix=".write-probe-"))
    except OSError as err:
        return f"{err.strerror or err} in {probe}"
    return None


def check_output_dir(key: str, path: str | Path) -> None:
    """Raise OutputDirError naming ``key``=``path`` when it cannot be created or written."""
    why = dir_problem(Path(path))
    if why is not None:
        raise OutputDirError(f"{key}={path} cannot be created or written ({why}); "
                             "choose a writable directory")


class OutputDirCheck(Callback):
    """Hydra callback: check ``hydra.run.dir`` (single run) or ``hydra.sweep.dir`` (sweep)
    before anything is created; a bad one ends the command with one line (sweep/user_errors.py)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.sweep.dir")

    @staticmethod
    def _check(config: DictConfig, key: str) -> None:
        # Hydra is about to copy the config into the dir (.hydra/, multirun.yaml): a password
        # written in a config file must not get there (sweep/validate.py password_errors)
        leaks = password_errors(config)
        if leaks:
            raise Refused("invalid configuration:\n  - " + "\n  - ".join(leaks))
        try:
            path = OmegaConf.select(config, key)
        except Exception:  # noqa: BLE001 - e.g. a ${hydra:...} not resolvable yet: Hydra decides
            return
        if path is None:
            return
        try:
            check_output_dir(key, str(path))
        except OutputDirError as err:
            # not an Exception, which Hydra would only warn of before failing on the dir
            raise Refused(str(err)) from err
