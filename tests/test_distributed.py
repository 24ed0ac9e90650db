"""Data-parallel training (training/distributed.py): two CPU processes (gloo) started by SLURM
through submitit or by torchrun train the same model as one process with the same global
batch and log one MLflow run; a killed rank takes the job down without a hang, and the job
then resumes from rank 0's checkpoint.

Tolerance of "the same": N processes compute the one-process trajectory in a different
floating-point summation order (each rank sums its slice of the batch loss, gloo all-reduces
float32 gradients and the float64 loss/accuracy sums), so results differ by float32
rounding amplified over the optimiser steps: measured 4e-9 relative (train_loss, 1 epoch)
and 2e-8 (20 epochs) on digits. REL = 1e-5 leaves over two orders of magnitude of margin.
test_acc may move by at most one test image (a near-tie logit flipping).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from jobs import (
    RUN,
    TINY,
    epochs_done,
    read_metrics_file,
    run_job,
    runs,
    sqlite_uri,
    wait_for,
)

from training.distributed import DistEnv, detect

REL = 1e-5
# one epoch of digits at a global batch of 128: 12 steps, the same for 1 and 2 processes
JOB = [*TINY, "trainer.batch_size=128", "trainer.threads=1"]
COMPARED = ("train_loss", "test_loss", "lr", "reg_loss")
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
            "--standalone"]


def single_run(tmp: Path, *extra: str) -> dict[str, float]:
    out = tmp / "single"
    run_job([*JOB, *extra, "tracking.enabled=false", f"hydra.run.dir={out}"], tmp)
    return read_metrics_file(out / "metrics.jsonl")[-1]["metrics"]


@pytest.fixture(scope="module")
def single_sym(tmp_path_factory) -> dict[str, float]:
    """One process, SymMixer (each W used twice: W and W^T), one epoch: the reference."""
    return single_run(tmp_path_factory.mktemp("single"), "model=sym")


def assert_same_training(got: dict[str, float], want: dict[str, float], n_test: int) -> None:
    for key in COMPARED:
        assert got[key] == pytest.approx(want[key], rel=REL, abs=1e-9), key
    assert abs(got["test_acc"] - want["test_acc"]) <= 100.0 / n_test + 1e-9
    sym = [k for k in want if k.startswith("symmetry/")]
    for key in sym:  # the trained weights themselves
        assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-6), key


def torchrun(args: list[str], cwd: Path, **kw) -> subprocess.Popen:
    env = {**os.environ, "MIXERLAB_CACHE": str(cwd / ".cache"), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([*TORCHRUN, RUN, *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)


# ----------------------------------------------------------------- unit: environment, shards
def test_environment_detection_torchrun_slurm_single():
    assert detect({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == ("torchrun", 1, 4, 1)
    slurm = {"SLURM_NTASKS": "8", "SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_STEP_ID": "0"}
    assert detect(slurm) == ("slurm", 5, 8, 1)
    # a batch script (no srun step), or the sweep driver's one task: one process
    assert detect({k: v for k, v in slurm.items() if k != "SLURM_STEP_ID"})[2] == 1
    assert detect({"SLURM_NTASKS": "1", "SLURM_PROCID": "0", "SLURM_STEP_ID": "0"})[2] == 1
    local = {"SUBMITIT_LOCAL_NTASKS": "2", "SUBMITIT_LOCAL_GLOBALID": "1",
             "SUBMITIT_LOCAL_LOCALID": "1"}
    assert detect(local) == ("submitit_local", 1, 2, 1)
    assert detect({}) == ("single", 0, 1, 0)


@pytest.mark.parametrize("n, world", [(128, 2), (77, 2), (41, 4), (3, 4)])
def test_shards_cover_the_batch_once_in_order(n, world):
    parts = [DistEnv(rank=r, world_size=world).shard(n) for r in range(world)]
    rows = [i for p in parts for i in range(n)[p]]
    assert rows == list(range(n))
    assert max(p.stop - p.start for p in parts) - min(p.stop - p.start for p in parts) <= 1


# ----------------------------------------------------------------- real runs
@pytest.mark.slurm
def test_two_slurm_tasks_train_like_one_process_and_log_one_run(tmp_path, single_sym):
    uri, sweep_dir = sqlite_uri(tmp_path), tmp_path / "sweep"
    t0 = time.perf_counter()
    run_job(["-m", "hydra/launcher=cpu_ddp2", *JOB, "model=sym", "trainer.devices=2",
             f"tracking.uri={uri}",
             "tracking.experiment=ddp", "sweep_name=ddp", f"hydra.sweep.dir={sweep_dir}"],
            tmp_path, timeout=300)
    print(f"2 SLURM tasks: {time.perf_counter() - t0:.1f} s")
    all_runs = runs(uri, "ddp")
    children = [r for r in all_runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 1 and len(all_runs) == 2  # one job run (+ the sweep's parent)
    run = children[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["trainer.devices"] == "2"
    logs = list((sweep_dir / ".submitit").glob("*/*_1_log.out"))
    assert logs, "no log of SLURM task 1: the job did not run 2 tasks"
    got = read_metrics_file(sweep_dir / "0" / "metrics.jsonl")
    assert len(got) == 1  # rank 0 alone wrote the file
    assert run.data.metrics["train_loss"] == got[0]["metrics"]["train_loss"]
    assert_same_training(got[0]["metrics"], single_sym, n_test=360)


def test_torchrun_two_processes_train_like_one_process_with_shared_weights(tmp_path, single_sym):
    """SymMixer uses each W twice (W and W^T): DDP still averages one gradient per weight."""
    uri, out = sqlite_uri(tmp_path), tmp_path / "ddp"
    proc = torchrun([*JOB, "model=sym", f"tracking.uri={uri}", "tracking.experiment=ddp",
                     f"hydra.run.dir={out}"], tmp_path)
    log, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, log[-5000:]
    all_runs = runs(uri, "ddp")
    assert len(all_runs) == 1 and all_runs[0].info.status == "FINISHED"
    got = read_metrics_file(out / "metrics.jsonl")[-1]["metrics"]
    assert all_runs[0].data.metrics["test_acc"] == got["test_acc"]
    assert_same_training(got, single_sym, n_test=360)


def python_with_env(procs, needle: str, key: str, value: str) -> list[psutil.Process]:
    """The processes whose command line contains ``needle`` and whose environment has
    key=value (e.g. torchrun's worker of RANK=1)."""
    found = []
    for p in procs:
        try:
            if needle in " ".join(p.cmdline()) and p.environ().get(key) == value:
                found.append(p)
        except psutil.Error:  # exited meanwhile
            pass
    return found


def kill_rank_1(proc: subprocess.Popen, job_dir: Path, find_rank1, start_timeout: float,
                end_timeout: float) -> str:
    """Once ``proc``'s job has finished an epoch (in ``job_dir``), SIGKILL its rank-1 process
    (``find_rank1()`` lists the candidates; exactly one must match) and return ``proc``'s
    output when it ends. The process group is killed if anything fails on the way."""
    try:
        wait_for("training to start", lambda: epochs_done(job_dir), start_timeout, proc)
        rank1 = find_rank1()
        assert len(rank1) == 1
        rank1[0].send_signal(signal.SIGKILL)
        t_kill = time.time()
        log, _ = proc.communicate(timeout=end_timeout)
        print(f"ended {time.time() - t_kill:.1f} s after the kill\n{log[-3000:]}")
        return log
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_a_killed_rank_takes_the_job_down_without_a_hang_and_the_job_resumes(tmp_path):
    """SIGKILL rank 1 mid-training: torchrun ends the job at once (rank 0 sees gloo's
    connection reset), naming the dead rank. The same command then resumes from rank 0's
    checkpoint on both ranks and ends where one process ends. AsymMixer: the regulariser
    lam ||V||^2 is computed on the unwrapped model and added on every rank."""
    job = [*JOB, "model=asym", "model.sb_lambda=1e-2", "trainer.epochs=40",
           "trainer.dist_timeout_s=30", "tracking.enabled=false", f"hydra.run.dir={tmp_path}/ddp"]
    metrics = tmp_path / "ddp" / "metrics.jsonl"
    proc = torchrun(job, tmp_path, start_new_session=True)
    # 90 s to end: torchrun's own failure propagation
    log = kill_rank_1(proc, metrics.parent, lambda: python_with_env(
        psutil.Process(proc.pid).children(recursive=True), "run.py", "RANK", "1"), 120, 90)
    assert proc.returncode != 0
    assert "SIGKILL" in log and "local_rank: 1" in log, log[-5000:]
    done = epochs_done(metrics.parent)
    assert 1 <= done < 40, "the job was not interrupted mid-training"

    ckpt = tmp_path / "ddp" / "checkpoint.pt"
    # rank 0 writes the epoch's metrics line, then its checkpoint: a kill between the two
    # leaves the checkpoint one epoch behind (the resumed job redoes that epoch)
    ckpt_epoch = torch.load(ckpt, weights_only=True)["epoch"] if ckpt.exists() else 0
    assert ckpt_epoch in (done - 1, done)

    proc = torchrun(job, tmp_path)
    log, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, log[-5000:]
    if ckpt_epoch:
        assert f"checkpoint.pt at epoch {ckpt_epoch}" in log  # "resumed from ..."
    rows = read_metrics_file(metrics)
    assert [r["epoch"] for r in rows] == list(range(1, 41))  # no missing or repeated epoch
    want = single_run(tmp_path, "model=asym", "model.sb_lambda=1e-2", "trainer.epochs=40")
    assert rows[-1]["metrics"]["reg_loss"] > 0
    assert_same_training(rows[-1]["metrics"], want, n_test=360)


@pytest.mark.slurm
def test_a_killed_slurm_task_fails_the_job_and_the_sweep_reports_it(tmp_path):
    uri, sweep_dir = sqlite_uri(tmp_path), tmp_path / "sweep"
    env = {**os.environ, "MIXERLAB_CACHE": str(tmp_path / ".cache")}
    proc = subprocess.Popen(
        [sys.executable, RUN, "-m", "hydra/launcher=cpu_ddp2", *JOB, "trainer.epochs=200",
         "trainer.dist_timeout_s=30", f"tracking.uri={uri}", "tracking.experiment=crash",
         f"hydra.sweep.dir={sweep_dir}"],
        cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True)
    metrics = sweep_dir / "0" / "metrics.jsonl"
    log = kill_rank_1(proc, metrics.parent, lambda: python_with_env(
        psutil.process_iter(), f"submitit.core._submit {sweep_dir}", "SLURM_PROCID", "1"),
        180, 150)
    assert proc.returncode != 0
    assert "1 of 1 jobs failed" in log, log[-5000:]
    assert len(read_metrics_file(metrics)) < 200
    (run,) = [r for r in runs(uri, "crash") if "mlflow.parentRunId" in r.data.tags]
    assert run.info.status in ("FAILED", "KILLED") and run.data.tags.get("error")
