"""Grid sweeps that check every job before launching any, and finish every job even when
some fail.

Hydra's basic sweeper composes each batch just before launching it and stops at the first
failed job's exception. On a cluster that means a typo in the 40th configuration is found
after 39 jobs were submitted, and one crash hides the outcome of the others. This sweeper
accepts the same configuration (``params``, ``max_batch_size``) and:

1. composes every job's config and validates it (sweep/validate.py) before the first launch,
   raising one error that lists each bad value, with no job launched;
2. launches all batches, records failures without stopping, writes
   ``<sweep dir>/failed_jobs.yaml``, closes the sweep's MLflow parent run as FAILED and raises
   one error naming each failed job; a driver stopped by an error or an interruption (Ctrl-C,
   SIGTERM) closes the parent run as FAILED with the reason too, never leaves it RUNNING;
3. logs the sweep's progress (done / failed / running / queued, elapsed, ETA) as jobs start
   and end: sweep/sweep_progress.py.
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Hydra 1.3 has no public grid sweeper to build on: its grid expansion (cartesian product of
# the sweep overrides, `params`, batches of `max_batch_size`) lives only in the internal
# BasicSweeper, which we reuse rather than copy. tests/test_private_api_pins.py pins what we
# use of it (split_arguments, _parse_config, get_job_batch, is_done and its attributes).
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobStatus
from omegaconf import OmegaConf

from sweep.mlflow_parent import parent_run_failed_on_error
from sweep.prelaunch import check_jobs
from sweep.sweep_progress import SweepProgress, launch

log = logging.getLogger(__name__)


@dataclass
class GridSweeperConf:
    _target_: str = "hydra_plugins.mixerlab_grid_sweeper.grid_sweeper.GridSweeper"
    max_batch_size: int | None = None
    params: dict[str, str] | None = None


# Registered as "grid" and also under Hydra's own default name "basic", so every grid sweep
# uses it without an `override hydra/sweeper` in the primary config (which would outrank an
# experiment's own sweeper choice, e.g. +experiment=search selecting optuna).
for _name in ("grid", "basic"):
    ConfigStore.instance().store(group="hydra/sweeper", name=_name, node=GridSweeperConf,
                                 provider="mixerlab")


class SweepFailed(RuntimeError):
    """Some jobs of the sweep failed; the others finished."""


class GridSweeper(BasicSweeper):
    def sweep(self, arguments: list[str]) -> Any:
        # an exception or an interruption (Ctrl-C, SIGTERM to the driver) closes the sweep's
        # parent run as FAILED with the reason, instead of leaving it RUNNING
        with parent_run_failed_on_error(self.config):
            return self._sweep(arguments)

    def _sweep(self, arguments: list[str]) -> Any:
        params_conf = self._parse_config() + list(arguments)
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        self.overrides = self.split_arguments(parser.parse_overrides(params_conf),
                                              self.max_batch_size)
        check_jobs(self.hydra_context.config_loader, self.config,
                   [job for batch in self.overrides for job in batch])

        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        returns, failed, idx = [], [], 0
        progress = SweepProgress(total=sum(len(batch) for batch in self.overrides))
        while not self.is_done():
            batch = self.get_job_batch()
            results = launch(self.launcher, batch, idx, progress)
            for job_idx, (overrides, ret) in enumerate(zip(batch, results, strict=True), idx):
                if ret.status == JobStatus.FAILED:
                    # the job's exception: the public return_value raises it (and prints to
                    # stderr); the field is what launchers set (pinned in
                    # tests/test_private_api_pins.py)
                    err = ret._return_value
                    failed.append({"job": job_idx, "overrides": " ".join(overrides),
                                   "error": f"{type(err).__name__}: {err}".splitlines()[0]})
            idx += len(batch)
            returns.append(results)
        progress.close()
        # every job has ended: a run still RUNNING belongs to a job killed outright (SIGKILL)
        from sweep.mlflow_parent import fail_orphaned_runs

        fail_orphaned_runs(self.config)
        if failed:
            self._report_failures(sweep_dir, failed, idx)
        return returns

    def _report_failures(self, sweep_dir: Path, failed: list[dict], total: int) -> None:
        from sweep.mlflow_parent import close_parent

        (sweep_dir / "failed_jobs.yaml").write_text(OmegaConf.to_yaml(failed))
        closed = False
        try:
            close_parent(self.config, "FAILED", {"failed_jobs": str(len(failed))})
            closed = True
        except Exception as err:  # noqa: BLE001 - the failure report matters more
            log.warning("could not mark the MLflow parent run FAILED: %s", err)
        lines = "\n".join(f"  job {f['job']} ({f['overrides']}): {f['error']}" for f in failed)
        error = SweepFailed(f"{len(failed)} of {total} jobs failed (the others finished; see "
                            f"{sweep_dir / 'failed_jobs.yaml'} and each job's log):\n{lines}")
        # closed here with its failed_jobs count: the driver's guard (parent_run_failed_on_error)
        # leaves it as it is; if closing failed, the guard tries again
        error.parent_run_closed = closed
        raise error
