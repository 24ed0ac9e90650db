"""Progress where work is long: the sweep driver's progress line (done / failed / pruned /
running / queued, elapsed, ETA) and the per-epoch lines in the job's log file in bar mode."""

from __future__ import annotations

import logging
import re
import types
from pathlib import Path

import pytest
import submitit
from hydra.core.utils import JobReturn, JobStatus
from jobs import run_job
from omegaconf import OmegaConf

from hydra_plugins.mixerlab_submitit_launcher import launcher as launcher_mod
from hydra_plugins.mixerlab_submitit_launcher.launcher import SlurmLauncher
from sweep import sweep_progress
from sweep.sweep_progress import INTERVAL_ENV, SweepProgress, interval_from_env, launch

JOB = ["data=digits", "model.dim=16", "model.depth=2", "trainer.epochs=1", "tracking=none",
       "trainer.lr=4e-3"]


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def ok(value: object = 0) -> JobReturn:
    return JobReturn(overrides=[], status=JobStatus.COMPLETED, _return_value=value)


def test_counts_and_eta():
    clock = Clock()
    # a resumed study: 1 trial already done; classify reads the return value
    p = SweepProgress(total=6, classify=lambda ret: ret.return_value, done=1, interval_s=30,
                      clock=clock)
    p.parallelism = 2
    assert (p.running, p.queued, p.eta_s()) == (0, 5, None)  # no job ended in this run yet
    for job in (1, 2):
        p.submitted(job)
    clock.t = 5.0
    assert p.started(1) and p.started(2) and not p.started(2)  # the second time is no news
    assert (p.running, p.queued) == (2, 3)
    clock.t = 15.0
    assert p.finished(1, ok("done")) and not p.finished(1, ok("done"))
    clock.t = 25.0
    assert p.finished(2, ok("pruned"))
    # durations from start: 10 s, 20 s; mean 15 s x (0 running + 3 queued) / 2 in parallel
    assert p.ended == {"done": 2, "failed": 0, "pruned": 1}
    assert (p.running, p.queued, p.eta_s()) == (0, 3, 22.5)
    # a job never seen running counts from its launch; an exception is a failure
    p.submitted(3)
    clock.t = 55.0
    assert p.finished(3, RuntimeError("launch failed"))
    assert p.durations == [10.0, 20.0, 30.0]
    assert p.eta_s() == 20.0 * 2 / 2
    # preempted and requeued: back to queued
    p.started(4)
    assert (p.running, p.queued) == (1, 1) and p.requeued(4) and (p.running, p.queued) == (0, 2)
    assert p.counts_text() == ("4/6 ended (done 2, failed 1, pruned 1), running 0, queued 2; "
                               "elapsed 0:00:55, ETA 0:00:20")
    with pytest.raises(ValueError, match="outcome 'lost' is invalid"):
        p.finished(5, ok("lost"))
    for job in (5, 6):
        p.finished(job, ok("done"))
    assert (p.queued, p.eta_s()) == (0, 0.0)


def test_lines_on_change_and_at_most_every_interval(caplog):
    clock = Clock()
    p = SweepProgress(total=2, interval_s=30, clock=clock)
    with caplog.at_level(logging.INFO, logger=sweep_progress.__name__):
        p.tick()            # the first line at once
        clock.t = 29.0
        p.tick()            # too soon
        clock.t = 30.0
        p.tick()
    assert len(caplog.records) == 2


@pytest.mark.parametrize("raw, value", [(None, 30.0), ("5", 5.0), ("0", 0.0)])
def test_interval_from_env(monkeypatch, raw, value):
    if raw is None:
        monkeypatch.delenv(INTERVAL_ENV, raising=False)
    else:
        monkeypatch.setenv(INTERVAL_ENV, raw)
    assert interval_from_env() == value


@pytest.mark.parametrize("raw", ["soon", "-1", "nan"])
def test_a_bad_interval_is_refused_naming_it(monkeypatch, raw):
    monkeypatch.setenv(INTERVAL_ENV, raw)
    with pytest.raises(ValueError, match=f"{INTERVAL_ENV}='{raw}' is invalid; valid: "):
        SweepProgress(total=1)


def test_a_launch_that_raises_counts_its_jobs_failed():
    class Broken:
        def launch(self, overrides: list, initial_job_idx: int) -> list:
            raise RuntimeError("sbatch: error")

    p = SweepProgress(total=3, interval_s=30)
    with pytest.raises(RuntimeError, match="sbatch"):
        launch(Broken(), [["x=0"], ["x=1"]], 0, p)
    assert p.ended["failed"] == 2 and p.queued == 1


@pytest.mark.parametrize("line_per_job, calls", [(True, [[0], [1]]), (False, [[0, 1]])])
def test_the_basic_launcher_gets_a_job_per_call_only_with_a_line_per_job(
        caplog, line_per_job, calls):
    from hydra._internal.core_plugins.basic_launcher import BasicLauncher

    class InProcess(BasicLauncher):  # Hydra's launcher, minus composing and running a job
        def __init__(self) -> None:
            self.calls: list[list[int]] = []

        def launch(self, overrides: list, initial_job_idx: int) -> list:
            self.calls.append([initial_job_idx + i for i in range(len(overrides))])
            return [ok(i) for i in self.calls[-1]]

    launcher, p = InProcess(), SweepProgress(total=3, interval_s=1000, clock=Clock())
    with caplog.at_level(logging.INFO, logger=sweep_progress.__name__):
        returns = launch(launcher, [["x=0"], ["x=1"]], 0, p, line_per_job=line_per_job)
    assert launcher.calls == calls and [r.return_value for r in returns] == [0, 1]
    assert p.ended["done"] == 2 and p.queued == 1 and p.parallelism == 1
    starting = [r for r in caplog.records if "starting" in r.getMessage()]
    assert len(starting) == (2 if line_per_job else 0)


class _SlurmJob:
    """A job the fake scheduler holds PENDING until tick ``start``, RUNNING until ``end``."""

    num_tasks = 1

    def __init__(self, idx: int, overrides: list[str], start: int, end: int, tick: Clock) -> None:
        self.job_id, self.idx, self.overrides = f"fake{idx}", idx, overrides
        self.start, self.end, self.tick = start, end, tick
        self.paths = types.SimpleNamespace(
            result_pickle=types.SimpleNamespace(exists=self.done))

    @property
    def state(self) -> str:
        t = self.tick.t
        return "PENDING" if t < self.start else "RUNNING" if t < self.end else "COMPLETED"

    def done(self) -> bool:
        return self.tick.t >= self.end

    def results(self) -> list[JobReturn]:
        assert self.done(), "results() before done()"
        return [JobReturn(overrides=self.overrides, status=JobStatus.COMPLETED,
                          _return_value=self.idx)]


def test_slurm_launch_counts_running_and_pending_from_the_launchers_poll(
        tmp_path, monkeypatch, caplog):
    tick = Clock()
    windows = [(1, 3), (2, 5)]  # job 0 runs from tick 1 to 3, job 1 from 2 to 5

    class Executor:
        def __init__(self, folder: str, cluster: str, **kwargs: object) -> None:
            pass

        def update_parameters(self, **kwargs: object) -> None:
            pass

        def map_array(self, fn: object, *iterable: list) -> list[_SlurmJob]:
            return [_SlurmJob(args[2], args[0], *windows[args[2]], tick)
                    for args in zip(*iterable, strict=True)]

    def sleep(seconds: float) -> None:
        tick.t += 1

    monkeypatch.setattr(launcher_mod.time, "sleep", sleep)
    monkeypatch.setattr(submitit, "AutoExecutor", Executor)
    launcher = SlurmLauncher(poll_interval_s=1.0, submitit_folder=str(tmp_path), timeout_min=1)
    launcher.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    progress = SweepProgress(total=3, interval_s=1000, clock=tick)
    with caplog.at_level(logging.INFO, logger=sweep_progress.__name__):
        returns = launch(launcher, [["x=0"], ["x=1"]], 0, progress)
    assert [r.return_value for r in returns] == [0, 1]
    lines = [r.getMessage().split("; elapsed")[0].split("), ")[1]
             for r in caplog.records if r.name == sweep_progress.__name__]
    # one line per change (the first at once), the third job not launched yet: queued
    assert lines == ["running 0, queued 3", "running 1, queued 2", "running 2, queued 1",
                     "running 1, queued 1", "running 0, queued 1"]
    assert progress.ended["done"] == 2 and progress.durations == [2.0, 3.0]
    assert progress.parallelism == 2


def test_grid_sweep_driver_logs_progress(tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = run_job(["-m", *JOB, "trainer.progress=lines", "seed=0,1,2",
                    f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path)
    out = proc.stdout + proc.stderr
    starts = re.findall(r"sweep progress: job (\d)/3 starting \(#(\d)\); (\d)/3 ended", out)
    assert starts == [("1", "0", "0"), ("2", "1", "1"), ("3", "2", "2")], out[-3000:]
    assert "ETA ?" in out  # the first job: nothing to estimate from yet
    assert re.search(r"job 3/3 starting \(#2\); 2/3 ended \(done 2, failed 0, pruned 0\), "
                     r"running 1, queued 0; elapsed \d+:\d\d:\d\d, ETA \d+:\d\d:\d\d", out)
    final = re.findall(r"sweep progress: (3/3 ended .*)", out)
    assert len(final) == 1 and final[0].startswith(
        "3/3 ended (done 3, failed 0, pruned 0), running 0, queued 0; elapsed "), final
    assert final[0].endswith("ETA 0:00:00")
    # the driver's lines stay out of the jobs' logs
    assert "sweep progress" not in (sweep_dir / "0" / "mixerlab.log").read_text()


def test_bar_mode_writes_the_epoch_lines_to_the_jobs_log_file(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_job([*JOB, "trainer.progress=bars", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert "epochs: 100%" in proc.stderr  # the bars were shown
    job_log = (run_dir / "mixerlab.log").read_text()
    assert re.search(r"\[INFO\] - epoch 1/1  train_loss \d", job_log), job_log
    assert len(re.findall(r"epoch 1/1  train_loss", proc.stdout + proc.stderr)) == 1
    assert Path(run_dir / "metrics.jsonl").exists()
