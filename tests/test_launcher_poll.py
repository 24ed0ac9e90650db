"""hydra.launcher.poll_interval_s and result_grace_s reach submitit: the launcher waits for its
jobs looking every poll_interval_s, submitit's SLURM watcher asks sacct (one call for all the
launch's jobs) at most that often, and a job SLURM reports ended without a result counts as
dead after result_grace_s. Behaviour, not timing: the clock is faked."""

from __future__ import annotations

import os
import types
from pathlib import Path

import pytest
import submitit
from hydra import compose, initialize_config_dir
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf
from submitit.core.utils import UncompletedJobError
from submitit.slurm.slurm import SlurmInfoWatcher

from hydra_plugins.mixerlab_submitit_launcher import launcher as launcher_mod
from hydra_plugins.mixerlab_submitit_launcher.config import (
    LOCAL_POLL_INTERVAL_S,
    POLL_INTERVAL_S,
    RESULT_GRACE_S,
)
from hydra_plugins.mixerlab_submitit_launcher.launcher import (
    SlurmLauncher,
    _dead_jobs_return_their_error,
)

CONF = str(Path(__file__).resolve().parents[1] / "conf")


def launcher_config(*overrides: str):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
    return cfg.hydra.launcher


@pytest.mark.parametrize("profile, poll, grace", [
    ("submitit_slurm", POLL_INTERVAL_S, RESULT_GRACE_S),
    ("submitit_local", LOCAL_POLL_INTERVAL_S, RESULT_GRACE_S),
    ("gpu_1", POLL_INTERVAL_S, RESULT_GRACE_S), ("gpu_4", POLL_INTERVAL_S, RESULT_GRACE_S),
    ("local_debug", POLL_INTERVAL_S, 1.0), ("cpu_ddp2", POLL_INTERVAL_S, 1.0)])
def test_every_submitit_profile_has_the_settings_with_their_defaults(profile, poll, grace):
    cfg = launcher_config(f"hydra/launcher={profile}")
    # SLURM: a look may ask sacct, once a second; local: a process poll, ten times a second
    assert cfg.poll_interval_s == poll and (POLL_INTERVAL_S, LOCAL_POLL_INTERVAL_S) == (1.0, 0.1)
    assert cfg.result_grace_s == grace and RESULT_GRACE_S == 15.0  # submitit's own grace


def test_the_setting_is_the_launchers_and_never_an_sbatch_parameter(tmp_path):
    cfg = launcher_config("hydra/launcher=local_debug", "hydra.launcher.poll_interval_s=0.25",
                          f"hydra.sweep.dir={tmp_path}")
    launcher = instantiate(cfg)
    # (Hydra's plugin scan re-executes the module: compare by name, not class identity)
    assert type(launcher).__qualname__ == "SlurmLauncher"
    assert (launcher.poll_interval_s, launcher.result_grace_s) == (0.25, 1.0)
    # the plugin passes its params on to the executor (sbatch)
    assert not {"poll_interval_s", "result_grace_s"} & set(launcher.params)
    assert launcher.params["partition"] == "debug"


def test_null_leaves_the_waiting_to_submitit(tmp_path):
    cfg = launcher_config("hydra/launcher=gpu_1", "hydra.launcher.poll_interval_s=null",
                          f"hydra.sweep.dir={tmp_path}")
    assert instantiate(cfg).poll_interval_s is None


@pytest.mark.parametrize("key, bad", [
    ("poll_interval_s", 0), ("poll_interval_s", -1.0), ("poll_interval_s", float("nan")),
    ("poll_interval_s", "soon"), ("result_grace_s", -1), ("result_grace_s", None),
    ("result_grace_s", float("inf"))])
def test_a_bad_value_is_refused_naming_it(key, bad):
    cfg = OmegaConf.create({"_target_": f"{launcher_mod.__name__}.SlurmLauncher", key: bad,
                            "submitit_folder": "x"})
    with pytest.raises(InstantiationException, match=f"hydra.launcher.{key}=.* valid: "):
        instantiate(cfg)


class _Job:
    """A submitted job that is done after ``polls`` calls of done()."""

    def __init__(self, idx: int, overrides: list[str], polls: int) -> None:
        self.job_id, self.idx, self.overrides, self.polls = f"fake{idx}", idx, overrides, polls

    def done(self) -> bool:
        self.polls -= 1
        return self.polls < 0

    def results(self) -> list[JobReturn]:
        assert self.polls < 0, "results() before done()"
        return [JobReturn(overrides=self.overrides, status=JobStatus.COMPLETED,
                          _return_value=self.idx)]


class _SubmititJob(_Job):
    """As submitit's Job: results() waits for done() itself (sleeping 1 s, not ours)."""

    def results(self) -> list[JobReturn]:
        while not self.done():
            pass
        return super().results()


@pytest.mark.parametrize("interval", [0.5, None])
def test_the_launch_waits_with_the_interval_and_the_watcher_asks_slurm_that_often(
        tmp_path, monkeypatch, interval):
    seen = {}

    class Executor:
        def __init__(self, folder: str, cluster: str, **kwargs: object) -> None:
            pass

        def update_parameters(self, **kwargs: object) -> None:
            seen["params"] = kwargs

        def map_array(self, fn: object, *iterable: list) -> list[_Job]:
            seen["delay_s"] = submitit.SlurmJob.watcher._delay_s
            seen["grace_s"] = submitit.SlurmJob._results_timeout_s
            return [_SubmititJob(args[2], args[0], polls=3)
                    for args in zip(*iterable, strict=True)]

    sleeps: list[float] = []
    monkeypatch.setattr(launcher_mod.time, "sleep", sleeps.append)
    monkeypatch.setattr(submitit, "AutoExecutor", Executor)
    stock_watcher = submitit.SlurmJob.watcher
    launcher = SlurmLauncher(poll_interval_s=interval, result_grace_s=2.0,
                             submitit_folder=str(tmp_path), timeout_min=1)
    launcher.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    returns = launcher.launch([["x=0"], ["x=1"]], initial_job_idx=0)

    assert [r.return_value for r in returns] == [0, 1]
    assert not any("poll" in k or "grace" in k for k in seen["params"])
    assert seen["grace_s"] == 2.0 and submitit.SlurmJob._results_timeout_s == 15  # given back
    if interval is None:  # submitit's waiting and its watcher
        assert sleeps == [] and seen["delay_s"] == stock_watcher._delay_s == 600
    else:
        assert sleeps == [0.5] * 6  # 3 looks per job, the interval between them
        assert seen["delay_s"] == 0.5  # the launch's jobs ask SLURM at most every 0.5 s
    assert submitit.SlurmJob.watcher is stock_watcher  # restored after the launch


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def time(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


def test_submitits_watcher_sends_one_sacct_per_interval_for_the_whole_array(tmp_path,
                                                                             monkeypatch):
    """Pins what the launcher relies on in submitit: a SlurmJob asks the class's watcher, which
    calls sacct once for all registered jobs (by array id) when delay_s has passed; a job that
    SLURM reports ended counts as done, and without a result file raises after the class's
    grace. A fake sacct logs its calls."""
    calls, state = tmp_path / "calls", tmp_path / "state"
    state.write_text("RUNNING")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sacct = bin_dir / "sacct"
    sacct.write_text(f"#!/bin/sh\necho \"$*\" >> {calls}\n"
                     f"echo 'JobID|State|NodeList'\n"
                     f"echo \"77_0|RUNNING|n\"\necho \"77_1|$(cat {state})|n\"\n")
    sacct.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    clock = _Clock()
    monkeypatch.setattr(submitit.core.core, "_time",
                        types.SimpleNamespace(time=clock.time, sleep=clock.sleep))

    def n_calls() -> int:
        return len(calls.read_text().splitlines()) if calls.exists() else 0

    (tmp_path / "jobs").mkdir()
    with _dead_jobs_return_their_error(poll_interval_s=1.0, result_grace_s=3.0):
        jobs = [submitit.SlurmJob(tmp_path / "jobs", f"77_{i}") for i in range(2)]
        for _ in range(5):  # five looks, a second apart, at both jobs
            clock.sleep(1.01)
            assert not any(job.done() for job in jobs)
        assert n_calls() == 5  # one sacct per look, not one per job
        assert calls.read_text().splitlines()[0].split().count("-j") == 1  # the array's id
        state.write_text("CANCELLED")
        clock.sleep(1.01)
        assert [job.done() for job in jobs] == [False, True]  # noticed at the next look
        assert n_calls() == 6
        # ended without a result file: dead once the grace (here 3 s) is over, not 15 s
        t0 = clock.now
        with pytest.raises(UncompletedJobError):
            jobs[1].results()
        assert 3 <= clock.now - t0 < 4

    # submitit's own (600 s) waits 2 s, then half the time since the last job registered
    monkeypatch.setattr(submitit.SlurmJob, "watcher", SlurmInfoWatcher(delay_s=600))
    calls.unlink()
    state.write_text("RUNNING")
    jobs = [submitit.SlurmJob(tmp_path / "jobs", f"77_{i}") for i in range(2)]
    for _ in range(10):
        clock.sleep(1.01)
        [job.done() for job in jobs]
    assert n_calls() < 10
