"""hydra-submitit-launcher's launchers, with one result per job even when a job dies.

The stock ``launch`` ends with ``[j.results()[0] for j in jobs]``: a job that dies without
writing its result (``scancel``, SIGKILL, out of memory, node failure, too many timeouts)
raises ``UncompletedJobError`` there, which aborts the whole sweep and hides the results of
every other job. These subclasses wait for every job and turn such a job into a FAILED
``JobReturn`` (its ``_return_value`` is the error), so the grid sweeper finishes the other jobs
and reports the dead one in ``failed_jobs.yaml``, and the Optuna sweeper fails only that trial.

Everything else (parameters, requeue through ``checkpoint()``) is the plugin's own.
``hydra/launcher=submitit_slurm`` / ``submitit_local`` and every profile built on them
(conf/hydra/launcher/*.yaml) select these classes: see config.py beside this file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher
from omegaconf import OmegaConf

log = logging.getLogger(__name__)


class _EveryJobLauncher(BaseSubmititLauncher):
    def launch(self, job_overrides: Sequence[Sequence[str]],
               initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit

        assert self.config is not None
        assert len(job_overrides) > 0
        # as BaseSubmititLauncher.launch (hydra-submitit-launcher 1.2)
        init_keys = {"max_num_timeout", "submitit_folder"}
        init_params: dict[str, Any] = {"folder": self.params["submitit_folder"]}
        if "max_num_timeout" in self.params:
            init_params[f"{self._EXECUTOR}_max_num_timeout"] = self.params["max_num_timeout"]
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **init_params)
        baseparams = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{
            k if k in baseparams else f"{self._EXECUTOR}_{k}": v
            for k, v in self.params.items() if k not in init_keys})

        log.info(f"Submitit '{self._EXECUTOR}' sweep output dir : {self.config.hydra.sweep.dir}")
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))

        job_params: list[Any] = []
        for idx, overrides in enumerate(job_overrides, initial_job_idx):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            job_params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}",
                               Singleton.get_state()))
        jobs = executor.map_array(self, *zip(*job_params, strict=True))
        returns = []
        for idx, (job, overrides) in enumerate(zip(jobs, job_overrides, strict=True),
                                               initial_job_idx):
            try:
                returns.append(job.results()[0])
            except Exception as err:  # noqa: BLE001 - the job died; the others still count
                log.error("job #%d (SLURM/submitit id %s) ended without a result: %s: %s",
                          idx, job.job_id, type(err).__name__, str(err).splitlines()[0]
                          if str(err) else "")
                returns.append(JobReturn(overrides=list(overrides), status=JobStatus.FAILED,
                                         _return_value=_JobDied(job.job_id, err)))
        return returns


class _JobDied(RuntimeError):
    """A job that ended without a result: cancelled, killed, out of memory, node failure."""

    def __init__(self, job_id: str, err: BaseException) -> None:
        first = str(err).strip().splitlines()
        super().__init__(
            f"job {job_id} ended without a result (cancelled, killed, out of memory or too "
            f"many timeouts): {type(err).__name__}{': ' + first[0] if first else ''}")


class SlurmLauncher(_EveryJobLauncher):
    _EXECUTOR = "slurm"


class LocalLauncher(_EveryJobLauncher):
    _EXECUTOR = "local"
