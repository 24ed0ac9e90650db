"""Check every job of a sweep before any is launched (used by both project sweepers)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from hydra.errors import CompactHydraException
from omegaconf import DictConfig

from sweep.mlflow_parent import abandon_parent_if_empty
from sweep.schema_errors import schema_error_message

log = logging.getLogger(__name__)


class SweepConfigError(CompactHydraException, ValueError):
    """Invalid values in a sweep's jobs, found before any job was launched."""


def check_jobs(config_loader, config: DictConfig, jobs: Sequence[Sequence[str]]) -> None:
    """Compose each job's config from its overrides and validate it (sweep/validate.py).

    Raises one SweepConfigError listing each distinct bad value with how many jobs have it;
    an MLflow parent run created for this sweep that has no child yet is discarded, so a
    rejected sweep leaves nothing behind.
    """
    # imported here: the validator imports torch and the data/model packages, which Hydra's
    # plugin discovery (this module is imported by the sweepers) must not pay for on --help
    from sweep.validate import config_errors

    problems: dict[str, list[str]] = {}
    tic = time.perf_counter()
    for overrides in jobs:
        try:
            cfg = config_loader.load_sweep_config(config, list(overrides))
        except Exception as err:  # an unknown key or a wrong type (sweep/schema_errors.py)
            message = schema_error_message(err, overrides)
            if message is None:
                raise
            problems.setdefault(message, []).append(" ".join(overrides))
            continue
        for err in config_errors(cfg):
            problems.setdefault(err, []).append(" ".join(overrides))
    log.debug("validated %d job configs in %.2f s", len(jobs), time.perf_counter() - tic)
    if not problems:
        return
    try:
        abandon_parent_if_empty(config)
    except Exception as err:  # noqa: BLE001 - the config error matters more
        log.warning("could not discard the sweep's MLflow parent run: %s", err)
    lines = [f"{err}\n      (in {len(bad)} of {len(jobs)} jobs, e.g. {bad[0]})"
             for err, bad in problems.items()]
    raise SweepConfigError("invalid sweep configuration, no job was launched:\n  - "
                           + "\n  - ".join(lines))
