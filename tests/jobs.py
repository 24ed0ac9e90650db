"""Run `python sweep/run.py` the way a user does (a subprocess) and read what it logged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[1]
RUN = str(ROOT / "sweep" / "run.py")
# the smallest useful job: 8x8 digits, C 16, depth 2
# (no model logged: ~1 s of torch.export per job; tests/test_mlflow_records.py checks it)
TINY = ["data=digits", "model.dim=16", "model.depth=2", "trainer.epochs=1",
        "trainer.progress=lines", "trainer.lr=4e-3", "tracking.log_model=false"]
# a job to interrupt: batch 2 makes epochs long enough (~1 s) to act mid-training; 1 thread as
# on SLURM
SLOW_JOB = ["data=digits", "model.dim=16", "model.depth=2", "trainer.batch_size=2",
            "trainer.threads=1", "trainer.lr=4e-3", "trainer.progress=lines",
            "tracking.log_model=false"]


def run_job(args: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """python sweep/run.py ARGS in ``cwd``; the data cache lives in cwd/.cache."""
    full_env = {**os.environ, "MIXERLAB_CACHE": str(cwd / ".cache"), **(env or {})}
    proc = subprocess.run([sys.executable, RUN, *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"run.py {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def sqlite_uri(cwd: Path) -> str:
    return f"sqlite:///{cwd / 'mlflow.db'}"


def runs(uri: str, experiment: str) -> list:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment {experiment!r} at {uri}"
    return client.search_runs([exp.experiment_id], max_results=1000)


def metric_history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    hist = MlflowClient(uri).get_metric_history(run_id, key)
    return sorted((m.step, m.value) for m in hist)


def read_metrics_file(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def epochs_done(job_dir: Path) -> int:
    """Lines in the job's metrics.jsonl (0 while it is missing or a line is being written)."""
    try:
        return len(read_metrics_file(job_dir / "metrics.jsonl"))
    except (OSError, ValueError):
        return 0


def wait_for(what: str, cond: Callable[[], object], timeout: float = 180,
             proc: subprocess.Popen | None = None, log: Path | None = None) -> object:
    """Poll ``cond`` until it is truthy (returns its value); fails after ``timeout`` s, or as
    soon as ``proc`` ends, showing the end of its output (``log`` when it writes to a file,
    else its stderr pipe, else its stdout pipe)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = cond()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            # its stderr pipe, or stdout when stderr is merged into it (stderr=STDOUT)
            out = log.read_text() if log is not None else \
                next((o for o in reversed(proc.communicate()) if o), "")
            raise AssertionError(f"the process ended while waiting for {what}:\n{out[-4000:]}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
