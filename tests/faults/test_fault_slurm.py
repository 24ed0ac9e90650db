"""Faults of SLURM jobs on the real local cluster (slurm/start_cluster.sh): a job requeued by
`scontrol requeue`, a job hitting its time limit (submitit's USR2 -> checkpoint -> requeue), a
job cancelled outright (`scancel`). A requeued job resumes from its last epoch checkpoint in the
same MLflow run; a cancelled one is closed KILLED and reported while the others finish."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from jobs import (
    RUN,
    SLOW_JOB,
    epochs_done,
    metric_history,
    run_job,
    runs,
    sqlite_uri,
    wait_for,
)
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slurm

KEYS = ("train_loss", "test_loss", "test_acc")


def start_sweep(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "MIXERLAB_CACHE": str(cwd / ".cache")}
    return subprocess.Popen([sys.executable, RUN, "-m", "hydra/launcher=local_debug", *args],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def slurm_job_id(uri: str, job_dir: Path) -> str | None:
    """The job's SLURM id as squeue shows it (<array job>_<task> for an array task; scancel
    does not accept an array task's raw job id here), from the tags of its MLflow run."""
    f = job_dir / "mlflow_run_id"
    if not f.exists() or not f.read_text().strip():
        return None
    tags = MlflowClient(uri).get_run(f.read_text().strip()).data.tags
    if tags.get("slurm_array_job_id"):
        return f"{tags['slurm_array_job_id']}_{tags['slurm_array_task_id']}"
    return tags.get("slurm_job_id")


def squeue_state(job_id: str) -> tuple[str, str]:
    out = subprocess.run(["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T|%r"],
                         capture_output=True, text=True).stdout.strip()
    state, _, reason = out.partition("|")
    return state, reason


def release_requeued(job_id: str, timeout: float = 120, limit_min: int | None = None) -> None:
    """SLURM holds a requeued job ~2 min (BeginTime) before it may start again: start it now
    (and optionally give the rerun a longer time limit so it is not timed out again)."""
    wait_for(f"job {job_id} requeued", lambda: squeue_state(job_id)[0] == "PENDING", timeout)
    cmd = ["scontrol", "update", f"JobId={job_id}", "StartTime=now"]
    if limit_min:
        cmd.append(f"TimeLimit={limit_min}")
    subprocess.run(cmd, check=True)


def check_resumed_like_straight(uri: str, resumed, straight, epochs: int) -> None:
    assert resumed.info.status == "FINISHED"
    assert "error" not in resumed.data.tags  # the interruption's tag was cleared on resume
    for key in KEYS:
        h_resumed = metric_history(uri, resumed.info.run_id, key)
        assert [s for s, _ in h_resumed] == list(range(1, epochs + 1)), key  # each epoch once
        assert h_resumed == metric_history(uri, straight.info.run_id, key), key  # same numbers


def test_requeued_job_resumes_and_cancelled_job_is_reported(tmp_path):
    """One SLURM array of three identical jobs (only run_name differs): `requeued` is requeued
    by `scontrol requeue` mid-training, `cancelled` is `scancel`ed, `straight` is left alone."""
    uri, sweep = sqlite_uri(tmp_path), tmp_path / "sweep"
    epochs = 6
    proc = start_sweep([*SLOW_JOB, f"trainer.epochs={epochs}",
                        "run_name=requeued,cancelled,straight", f"tracking.uri={uri}",
                        "tracking.experiment=requeue",
                        f"hydra.sweep.dir={sweep}"], tmp_path)
    try:
        requeued, cancelled = sweep / "0", sweep / "1"
        wait_for("two epochs of job 0 and one of job 1",
                 lambda: epochs_done(requeued) >= 2 and epochs_done(cancelled) >= 1, 240,
                 proc=proc)
        rq_id, cc_id = slurm_job_id(uri, requeued), slurm_job_id(uri, cancelled)
        assert rq_id and cc_id
        done_before = epochs_done(requeued)
        for cmd in (["scontrol", "requeue", rq_id], ["scancel", cc_id]):
            done = subprocess.run(cmd, capture_output=True, text=True)
            assert done.returncode == 0 and not done.stderr, (cmd, done.stderr)
        assert done_before < epochs, "job 0 finished before it could be requeued"
        release_requeued(rq_id)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0  # the sweep reports its failed job...
    assert "1 of 3 jobs failed" in err, err[-3000:]
    failed = yaml.safe_load((sweep / "failed_jobs.yaml").read_text())
    assert [f["job"] for f in failed] == [1] and "run_name=cancelled" in failed[0]["overrides"]
    assert "ended without a result" in failed[0]["error"]

    children = {r.info.run_name: r for r in runs(uri, "requeue") if r.data.tags.get("sweep")
                != "true"}
    assert sorted(children) == ["cancelled", "requeued", "straight"]  # no duplicate run
    # ...which is closed, not RUNNING forever: SIGTERM from scancel closes it as KILLED
    assert children["cancelled"].info.status in ("KILLED", "FAILED")
    assert "SIGTERM" in children["cancelled"].data.tags["error"] or \
        "killed" in children["cancelled"].data.tags["error"]
    assert children["straight"].info.status == "FINISHED"
    check_resumed_like_straight(uri, children["requeued"], children["straight"], epochs)
    assert "resumed from" in (requeued / "mixerlab.log").read_text()  # Hydra's job log


def test_job_hitting_its_time_limit_is_requeued_and_resumes(tmp_path):
    """SLURM warns the job with USR2 signal_delay_s=40 s before its time limit; submitit's
    handler checkpoints the launcher and requeues the job, which resumes from its last epoch
    checkpoint in the same run. SLURM may send the warning up to a minute early (its timer
    resolution), even before Python has started: so the job is submitted with a 5 min limit
    and the limit is cut to 1 min (warning due at once) once it has trained an epoch."""
    uri, sweep = sqlite_uri(tmp_path), tmp_path / "sweep"
    epochs = 40  # > 30 s of training left when the limit is cut (the timer resolution)
    common = [*SLOW_JOB, f"trainer.epochs={epochs}", f"tracking.uri={uri}",
              "tracking.experiment=timeout"]
    proc = start_sweep([*common, "run_name=timed-out", "hydra.launcher.timeout_min=5",
                        "hydra.launcher.signal_delay_s=40", f"hydra.sweep.dir={sweep}"],
                       tmp_path)
    try:
        job_dir = sweep / "0"
        wait_for("an epoch of the job", lambda: epochs_done(job_dir) >= 1, 240, proc=proc)
        job_id = slurm_job_id(uri, job_dir)
        subprocess.run(["scontrol", "update", f"JobId={job_id}", "TimeLimit=1"], check=True)
        # the USR2 warning follows within SLURM's timer resolution; its handler requeues
        release_requeued(job_id, timeout=150, limit_min=10)
        done_at_timeout = epochs_done(job_dir)
        # meanwhile the reference: the same job uninterrupted (basic launcher, in-process)
        run_job([*common, "run_name=straight", f"hydra.run.dir={tmp_path / 'straight'}"],
                tmp_path)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert 1 <= done_at_timeout < epochs, "the job was not interrupted mid-training"
    submitit_log = "".join(p.read_text() for p in (sweep / ".submitit").rglob("*_log.err"))
    assert "Caught signal SIGUSR2" in submitit_log and "timed-out" in submitit_log
    by_name = {r.info.run_name: r for r in runs(uri, "timeout")
               if r.data.tags.get("sweep") != "true"}
    assert sorted(by_name) == ["straight", "timed-out"]  # no duplicate run
    check_resumed_like_straight(uri, by_name["timed-out"], by_name["straight"], epochs)
