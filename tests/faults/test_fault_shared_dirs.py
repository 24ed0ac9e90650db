"""One sweep dir, one driver; one output dir, one job (issue 13, item 2; sweep/dir_lock.py).

Two sweeps on the same hydra.sweep.dir, or two single jobs on the same hydra.run.dir: the second
is refused at once with one line naming the dir and the holder, and the first finishes with
exactly its own epochs and runs. A driver killed outright leaves its lock file but no lock.
A job reopens an MLflow run (named by its checkpoint or its mlflow_run_id file) only when that
run exists in its experiment and has its config fingerprint; otherwise it fails naming both,
and nothing is logged to the other run."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from jobs import (
    RUN,
    SLOW_JOB,
    TINY,
    epochs_done,
    metric_history,
    read_metrics_file,
    run_job,
    runs,
    sqlite_uri,
    wait_for,
)
from mlflow.tracking import MlflowClient
from services import mlflow_server

from sweep.dir_lock import DRIVER_LOCK, JOB_LOCK, acquire, release
from tracking.mlflow_tracker import MlflowTracker, RunMismatch

EPOCHS = 4  # enough for a second command to start while the first runs


def start(args: list[str], cwd: Path, name: str) -> tuple[subprocess.Popen, Path]:
    """python sweep/run.py ARGS in the background; its output goes to cwd/<name>.log."""
    log = cwd / f"{name}.log"
    env = {**os.environ, "MIXERLAB_CACHE": str(cwd / ".cache")}
    proc = subprocess.Popen([sys.executable, RUN, *args], cwd=cwd, env=env,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)  # noqa: SIM115
    return proc, log


def finish(proc: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    try:
        assert proc.wait(timeout=timeout) == 0, log.read_text()[-4000:]
    finally:
        if proc.poll() is None:
            proc.kill()


def steps(uri: str, run_id: str) -> list[int]:
    return [s for s, _ in metric_history(uri, run_id, "test_acc")]


def assert_epochs(job_dir: Path, epochs: int = EPOCHS) -> None:
    """The job's metrics.jsonl holds each epoch exactly once, in order."""
    assert [r["epoch"] for r in read_metrics_file(job_dir / "metrics.jsonl")] == \
        list(range(1, epochs + 1))


def second_while_first_runs(args: list[str], cwd: Path, what: str, ready: Callable[[], object]
                            ) -> tuple[subprocess.Popen, Path, object, subprocess.CompletedProcess]:
    """Start ``args`` in the background, wait until ``ready()`` is truthy (``what``), then run the
    same command again to its end while the first still runs: (first, its log, what ``ready``
    returned, the second). The first is killed if anything goes wrong meanwhile."""
    first, log = start(args, cwd, "first")
    try:
        value = wait_for(what, ready, proc=first, log=log)
        second = run_job(args, cwd, check=False, timeout=120)
        assert first.poll() is None, "the first command ended before the second was refused"
    except BaseException:
        first.kill()
        raise
    return first, log, value, second


def refusal(proc: subprocess.CompletedProcess) -> str:
    """The one line a refused command printed."""
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]  # a user error
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    [line] = [ln for ln in proc.stderr.splitlines() if "is in use by another" in ln]
    return line


@pytest.mark.slow
def test_second_sweep_on_the_same_dir_is_refused_and_the_first_is_intact(tmp_path):
    uri, sweep = sqlite_uri(tmp_path), tmp_path / "sweep"
    args = ["-m", *SLOW_JOB, f"trainer.epochs={EPOCHS}", "seed=0,1", f"tracking.uri={uri}",
            "tracking.experiment=shared", "sweep_name=shared", f"hydra.sweep.dir={sweep}"]
    # ready once the first driver has created the sweep's parent run: its jobs are ahead of it
    first, log, _, second = second_while_first_runs(
        args, tmp_path, "the first sweep's start", (sweep / ".mlflow_parent_run.json").exists)
    line = refusal(second)
    assert line.startswith(f"hydra.sweep.dir={sweep} is in use by another sweep driver "
                           f"(pid {first.pid} on host {socket.gethostname()} since "), line
    assert line.endswith("); wait for it to end, or choose another hydra.sweep.dir"), line
    assert "Launching" not in second.stdout + second.stderr  # no job of the second sweep ran

    finish(first, log)
    for job in ("0", "1"):
        assert_epochs(sweep / job)
    all_runs = runs(uri, "shared")
    parents = [r for r in all_runs if r.data.tags.get("sweep") == "true"]
    children = [r for r in all_runs if r not in parents]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 2
    for run in children:
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert steps(uri, run.info.run_id) == list(range(1, EPOCHS + 1))


@pytest.mark.parametrize("sweeper", ["grid", "optuna"])
def test_a_refused_driver_touches_nothing(tmp_path, sweeper):
    """Either sweeper, while another driver holds the dir: refused before the MLflow store,
    the parent run, the Optuna study or any job exists."""
    uri, sweep = sqlite_uri(tmp_path), tmp_path / "sweep"
    search = ["hydra/sweeper=optuna", "hydra.sweeper.n_trials=2", "model.dim=choice(8,16)"] \
        if sweeper == "optuna" else ["seed=0,1"]
    lock = sweep / DRIVER_LOCK
    acquire(lock, "the test's sweep dir", "test", "dir")  # a live driver (this process)
    try:
        t0 = time.monotonic()
        proc = run_job(["-m", *TINY, *search, f"tracking.uri={uri}", f"hydra.sweep.dir={sweep}"],
                       tmp_path, check=False, timeout=120)
        seconds = time.monotonic() - t0
    finally:
        release(lock)
    line = refusal(proc)
    assert f"hydra.sweep.dir={sweep} is in use by another sweep driver (pid {os.getpid()}" \
        in line
    assert sorted(p.name for p in sweep.iterdir()) == [DRIVER_LOCK]  # no journal, no job dir
    assert not (tmp_path / "mlflow.db").exists()  # no parent run: not even the store
    assert seconds < 60, seconds  # the time to start Python and compose the config


@pytest.mark.slow
def test_driver_killed_outright_leaves_no_stale_lock(tmp_path):
    uri, sweep = sqlite_uri(tmp_path), tmp_path / "sweep"
    args = ["-m", *SLOW_JOB, f"trainer.epochs={EPOCHS}", f"tracking.uri={uri}",
            "tracking.experiment=killed", f"hydra.sweep.dir={sweep}"]
    proc, log = start(args, tmp_path, "killed")
    try:
        wait_for("one epoch", lambda: epochs_done(sweep / "0") >= 1, proc=proc, log=log)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    # the files stay, naming the dead driver (and its in-process job) ...
    for lock in (sweep / DRIVER_LOCK, sweep / "0" / JOB_LOCK):
        assert json.loads(lock.read_text())["pid"] == proc.pid, lock
    # ... but the kernel dropped the locks: the same command runs and resumes the job
    run_job(args, tmp_path)
    assert json.loads((sweep / DRIVER_LOCK).read_text())["pid"] != proc.pid
    assert_epochs(sweep / "0")
    [child] = [r for r in runs(uri, "killed") if r.data.tags.get("sweep") != "true"]
    assert child.info.status == "FINISHED"
    assert steps(uri, child.info.run_id) == list(range(1, EPOCHS + 1))


@pytest.mark.slow
def test_second_job_on_the_same_run_dir_is_refused_and_the_first_is_intact(tmp_path):
    uri, out = sqlite_uri(tmp_path), tmp_path / "job"
    args = [*SLOW_JOB, f"trainer.epochs={EPOCHS}", f"tracking.uri={uri}",
            "tracking.experiment=twice", f"hydra.run.dir={out}"]
    config = out / ".hydra" / "config.yaml"  # Hydra writes it as the job starts ...
    overrides = out / ".hydra" / "overrides.yaml"  # ... and this one after it is closed
    # (sampling config.yaml's mtime as soon as it exists could catch it mid-write)
    first, log, written, second = second_while_first_runs(
        args, tmp_path, "the first job's start",
        lambda: overrides.exists() and config.stat().st_mtime_ns)
    line = refusal(second)
    assert f"hydra.run.dir={out} is in use by another job (pid {first.pid} on host " in line
    assert line.endswith("wait for it to end, or choose another hydra.run.dir"), line
    assert config.stat().st_mtime_ns == written  # Hydra wrote nothing into the dir either

    finish(first, log)
    assert_epochs(out)
    [run] = runs(uri, "twice")
    assert run.info.status == "FINISHED"
    assert steps(uri, run.info.run_id) == list(range(1, EPOCHS + 1))


@pytest.mark.slow
def test_a_run_of_another_config_or_none_is_never_reopened(tmp_path):
    """A fresh output dir whose mlflow_run_id file names another configuration's run, or a
    run the server does not have: the job fails at once naming both, logging nothing."""
    with mlflow_server(tmp_path / "server") as uri:
        common = [*TINY, "trainer.epochs=2", f"tracking.uri={uri}", "tracking.experiment=ids",
                  "tracking.retries=2", "tracking.retry_backoff_s=0.2"]
        run_job([*common, f"hydra.run.dir={tmp_path / 'a'}"], tmp_path)
        [run_a] = runs(uri, "ids")
        a_id, before = run_a.info.run_id, metric_history(uri, run_a.info.run_id, "test_acc")
        a_fingerprint = run_a.data.tags.get("config_fingerprint")

        b = tmp_path / "b"
        b.mkdir()
        (b / "mlflow_run_id").write_text(a_id)
        proc = run_job([*common, "model.dim=32", f"hydra.run.dir={b}"], tmp_path, check=False)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0, out[-3000:]
        assert a_fingerprint is not None and re.fullmatch(r"[0-9a-f]{16}", a_fingerprint)
        found = re.search(rf"{re.escape(str(b / 'mlflow_run_id'))} names MLflow run {a_id}, "
                          rf"whose config_fingerprint is {a_fingerprint}, not this job's "
                          r"([0-9a-f]{16}): not reopened, nothing logged", out)
        assert found and found.group(1) != a_fingerprint, out[-3000:]
        assert "trainer.resume=false" in out and "retrying" not in out
        # run a is untouched, and b created no run
        [run] = runs(uri, "ids")
        assert run.info.run_id == a_id and run.info.status == "FINISHED"
        assert metric_history(uri, a_id, "test_acc") == before
        assert run.data.params["model.dim"] == "16"
        assert run.data.tags["output_dir"] == str((tmp_path / "a").resolve())
        assert not (b / "metrics.jsonl").exists()

        # a run id the server does not hold: refused at once, not retried as an outage
        missing = "0123456789abcdef0123456789abcdef"
        (b / "mlflow_run_id").write_text(missing)
        proc = run_job([*common, f"hydra.run.dir={b}"], tmp_path, check=False)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0, out[-3000:]
        assert (f"{b / 'mlflow_run_id'} names MLflow run {missing}, which does not exist at "
                "tracking.uri: not reopened") in out, out[-3000:]
        assert "retrying" not in out
        assert len(runs(uri, "ids")) == 1


def test_reopen_checks_experiment_and_fingerprint_and_accepts_untagged_runs(tmp_path, caplog):
    """The tracker's part, in process: a run of another experiment or fingerprint is refused
    before anything is written to it; a run logged before the tag existed is reopened with a
    warning and gets the tag."""
    uri = sqlite_uri(tmp_path)
    tracker = MlflowTracker(uri, "exp", retries=0)
    run_id = tracker.start(run_name="old", params={}, tags={"output_dir": "x"})
    tracker.finish("FINISHED")
    client = MlflowClient(uri)

    other = MlflowTracker(uri, "other-exp", retries=0)
    with pytest.raises(RunMismatch, match=f"run {run_id}, which is in experiment 'exp', not in "
                                          "tracking.experiment='other-exp'"):
        other.start(run_name="new", params={}, tags={"config_fingerprint": "f1"},
                    resume_run_id=run_id, match_tags=("config_fingerprint",))

    reopened = MlflowTracker(uri, "exp", retries=0)
    reopened.start(run_name="new", params={}, tags={"config_fingerprint": "f1"},
                   resume_run_id=run_id, match_tags=("config_fingerprint",))
    assert "has no config_fingerprint tag (logged by an older version)" in caplog.text
    run = client.get_run(run_id)
    assert run.info.status == "RUNNING" and run.data.tags["config_fingerprint"] == "f1"
    reopened.finish("FINISHED")

    stranger = MlflowTracker(uri, "exp", retries=0)
    with pytest.raises(RunMismatch, match=f"run {run_id}, whose config_fingerprint is f1, not "
                                          "this job's f2"):
        stranger.start(run_name="new", params={}, tags={"config_fingerprint": "f2"},
                       resume_run_id=run_id, match_tags=("config_fingerprint",))
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["config_fingerprint"] == "f1"


def test_lock_is_reentrant_in_a_process_and_exclusive_between_processes(tmp_path):
    lock = tmp_path / "d" / JOB_LOCK
    acquire(lock, "dir d", "job", "hydra.run.dir")
    acquire(lock, "dir d", "job", "hydra.run.dir")  # the same process again: counted
    probe = ("import sys; from pathlib import Path; from sweep.dir_lock import acquire; "
             "acquire(Path(sys.argv[1]), 'dir d', 'job', 'hydra.run.dir')")
    root = Path(__file__).resolve().parents[2]
    try_lock = lambda: subprocess.run([sys.executable, "-c", probe, str(lock)],  # noqa: E731
                                      capture_output=True, text=True, cwd=root, timeout=60)
    release(lock)
    held = try_lock()
    assert held.returncode != 0 and "DirInUse: dir d is in use by another job (pid " \
        f"{os.getpid()} on host" in held.stderr, held.stderr[-2000:]
    release(lock)  # the last release unlocks; the file stays
    assert try_lock().returncode == 0, "still locked after the last release"
    assert lock.exists()
