"""The MLflow tracking server down when a job starts, or dropping mid-run: the job retries with
back-off (tracking.retries, tracking.retry_backoff_s) and logs everything once the server is
back, or fails with a clear message; the checkpoint and metrics.jsonl are never lost, and the
same command resumes into the same run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from jobs import (
    RUN,
    SLOW_JOB,
    epochs_done,
    metric_history,
    read_metrics_file,
    run_job,
    runs,
    wait_for,
)
from services import free_port, mlflow_server


def start_job(args: list[str], cwd: Path) -> tuple[subprocess.Popen, Path]:
    log = cwd / "job.log"
    env = {**os.environ, "MIXERLAB_CACHE": str(cwd / ".cache")}
    # the job's log (Hydra's console handler writes to stdout) and its traceback (stderr)
    proc = subprocess.Popen([sys.executable, RUN, *args], cwd=cwd, env=env,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)  # noqa: SIM115
    return proc, log


def steps(uri: str, run_id: str, key: str = "test_acc") -> list[int]:
    return [s for s, _ in metric_history(uri, run_id, key)]


def test_server_down_at_start_then_up_then_dropping_mid_run(tmp_path):
    """One job sees both outages: no server when it starts (it retries until the server comes
    up late), then the server stops mid-training and comes back on the same port and store."""
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    out, server_dir = tmp_path / "job", tmp_path / "server"
    epochs = 6
    proc, log = start_job([*SLOW_JOB, f"trainer.epochs={epochs}", f"tracking.uri={uri}",
                           "tracking.experiment=outage", "tracking.retries=7",
                           "tracking.retry_backoff_s=0.5", f"hydra.run.dir={out}"], tmp_path)
    try:
        wait_for("a retried tracking call", lambda: "retrying in" in log.read_text(),
                 proc=proc, log=log)
        assert epochs_done(out) == 0  # nothing trains before the run exists
        with mlflow_server(server_dir, port=port):  # the server comes up late
            wait_for("two logged epochs", lambda: epochs_done(out) >= 2, proc=proc, log=log)
        at_drop = epochs_done(out)  # the server is down again (stopped by the context manager)
        retries_before = log.read_text().count("retrying in")
        wait_for("a retried tracking call", lambda: log.read_text().count("retrying in")
                 > retries_before, proc=proc, log=log)
        with mlflow_server(server_dir, port=port):  # back on the same port and store
            assert proc.wait(timeout=300) == 0, log.read_text()[-4000:]
            [run] = runs(uri, "outage")
            assert run.info.status == "FINISHED"
            for key in ("test_acc", "train_loss"):
                assert steps(uri, run.info.run_id, key) == list(range(1, epochs + 1)), key
    finally:
        if proc.poll() is None:
            proc.kill()
    assert at_drop < epochs, "the job finished before the server went down"
    assert len(read_metrics_file(out / "metrics.jsonl")) == epochs
    text = log.read_text()
    assert "tracking call 'experiment' failed (MlflowException" in text
    assert "tracking call 'log metrics' failed (MlflowException" in text


def test_server_gone_for_good_fails_clearly_and_keeps_results(tmp_path):
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    out, server_dir = tmp_path / "job", tmp_path / "server"
    epochs = 4
    args = [*SLOW_JOB, f"trainer.epochs={epochs}", f"tracking.uri={uri}",
            "tracking.experiment=gone", "tracking.retries=2", "tracking.retry_backoff_s=0.2",
            f"hydra.run.dir={out}"]
    with mlflow_server(server_dir, port=port):
        proc, log = start_job(args, tmp_path)
        wait_for("one logged epoch", lambda: epochs_done(out) >= 1, proc=proc, log=log)
    try:
        assert proc.wait(timeout=120) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
    err = log.read_text()
    assert "TrackingError: tracking call" in err and "failed after 3 attempts" in err, err[-3000:]
    assert "training results are safe in" in err and "rerun the same command" in err
    done = epochs_done(out)
    assert 1 <= done < epochs
    assert (out / "checkpoint.pt").exists()  # training results are on disk

    # the server is back: the same command resumes from the checkpoint into the same run and
    # logs the epochs the server missed
    with mlflow_server(server_dir, port=port):
        run_job(args, tmp_path)
        [run] = runs(uri, "gone")
        assert run.info.status == "FINISHED"
        assert steps(uri, run.info.run_id) == list(range(1, epochs + 1))
    assert len(read_metrics_file(out / "metrics.jsonl")) == epochs
