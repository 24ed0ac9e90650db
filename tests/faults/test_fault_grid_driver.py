"""The grid sweep driver interrupted mid-sweep (SIGTERM: scancel of the driver's own job, a
time limit, kill; SIGINT: Ctrl-C): the job that was running closes its run as KILLED and the
sweep's MLflow parent run is closed as FAILED with the reason, never left RUNNING."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from jobs import RUN, SLOW_JOB, read_metrics_file, runs, sqlite_uri


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_an_interrupted_grid_driver_closes_its_parent_run(tmp_path, sig):
    uri, sweep_dir = sqlite_uri(tmp_path), tmp_path / "sweep"
    args = ["-m", *SLOW_JOB, "trainer.epochs=20", "seed=0,1", f"tracking.uri={uri}",
            "tracking.experiment=grid-driver", "sweep_name=grid-driver",
            f"hydra.sweep.dir={sweep_dir}"]
    env = {**os.environ, "MIXERLAB_CACHE": str(tmp_path / ".cache")}
    proc = subprocess.Popen([sys.executable, RUN, *args], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    running = sweep_dir / "0" / "metrics.jsonl"
    deadline = time.time() + 180
    try:
        while not (running.exists() and read_metrics_file(running)):  # job 0 is mid-training
            assert proc.poll() is None and time.time() < deadline, proc.stderr.read()[-3000:]
            time.sleep(0.05)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == (143 if sig == signal.SIGTERM else 130), err[-3000:]
    logged = runs(uri, "grid-driver")
    [parent] = [r for r in logged if r.data.tags.get("sweep") == "true"]
    assert parent.info.status == "FAILED", parent.info.status
    reason = "JobTerminated" if sig == signal.SIGTERM else "KeyboardInterrupt"
    assert parent.data.tags["error"].startswith(reason), parent.data.tags["error"]
    [job] = [r for r in logged if r.data.tags.get("sweep") != "true"]  # job 1 never started
    assert job.info.status == "KILLED"
    assert job.data.tags["mlflow.parentRunId"] == parent.info.run_id
