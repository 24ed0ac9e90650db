"""Asynchronous trials (``hydra.sweeper.async_trials``, issue 14 B): no worker waits for the
slowest trial of a batch.

Each sweep runs tests/apps/sleep_task.py through ``hydra/launcher=submitit_local`` (a process
per job) in a subprocess; trial k sleeps ``durations[k]`` and writes its own start and end
(``timing.json``), from which the tests read when each trial ran.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import yaml

from tracking.optuna_storage import open_storage, resolve_storage_url

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "tests" / "apps" / "sleep_task.py"
PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv").exists() else sys.executable


def command(sweep_dir: Path, durations: list[float], *overrides: str) -> list[str]:
    return [PYTHON, str(APP), "-m", f"hydra.sweep.dir={sweep_dir}",
            "hydra/launcher=submitit_local", "hydra.sweeper.sampler.seed=0",
            "hydra.sweeper.n_jobs=2", f"hydra.sweeper.n_trials={len(durations)}",
            f"durations=[{','.join(map(str, durations))}]", *overrides]


def sweep(sweep_dir: Path, durations: list[float], *overrides: str,
          check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(command(sweep_dir, durations, *overrides), cwd=REPO,
                          capture_output=True, text=True, timeout=180)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def states(sweep_dir: Path) -> list[str]:
    storage = open_storage(resolve_storage_url(None, str(sweep_dir)))
    return [t.state.name for t in optuna.load_study(study_name="sleep", storage=storage).trials]


def span(sweep_dir: Path, trial: int) -> dict[str, float]:
    return json.loads((sweep_dir / str(trial) / "timing.json").read_text())


def job_dirs(sweep_dir: Path) -> list[int]:
    return sorted(int(p.name) for p in sweep_dir.iterdir() if p.name.isdigit())


def test_async_launches_the_next_trial_while_a_slow_one_runs_and_resumes(tmp_path) -> None:
    out = tmp_path / "async"
    # trial 0 sleeps 10 s; trials 1, 2, 3 run one after another on the other worker meanwhile
    proc = sweep(out, [10, 0.1, 0.1, 0.1])
    assert states(out) == ["COMPLETE"] * 4
    assert span(out, 2)["start"] < span(out, 0)["end"]
    assert span(out, 3)["start"] < span(out, 0)["end"]
    assert "batches" not in proc.stdout + proc.stderr  # the submitit launcher runs async
    # resumed to the study's total; job dir k ran trial k
    sweep(out, [10, 0.1, 0.1, 0.1, 0.1, 0.1])
    assert states(out) == ["COMPLETE"] * 6
    assert job_dirs(out) == list(range(6))
    for number in range(6):
        overrides = yaml.safe_load((out / str(number) / ".hydra" / "overrides.yaml").read_text())
        assert f"optuna.trial={number}" in overrides


def test_a_trial_counts_as_ended_at_its_result_not_at_its_process_exit(tmp_path) -> None:
    """One worker; each job's process stays 4 s after its task returned: the next trial
    starts before that process is gone, and the sweep returns only after every one is."""
    out = tmp_path / "linger"
    sweep(out, [0.1, 0.1, 0.1], "hydra.sweeper.n_jobs=1", "linger_s=4")
    assert states(out) == ["COMPLETE"] * 3
    exited = [json.loads((out / str(k) / "exited.json").read_text())["at"] for k in range(3)]
    for k in (1, 2):
        assert span(out, k)["start"] < exited[k - 1]  # did not wait for the exit
    assert span(out, 2)["end"] + 3 < exited[2]  # the last exit was awaited, not cut short


def test_batch_mode_waits_for_the_whole_batch(tmp_path) -> None:
    out = tmp_path / "batch"
    sweep(out, [4, 0.1, 0.1], "hydra.sweeper.async_trials=false")
    assert states(out) == ["COMPLETE"] * 3
    assert span(out, 2)["start"] > span(out, 0)["end"]  # trial 2 waited for the batch {0, 1}


def test_too_many_failures_stop_launching_and_await_the_running_trials(tmp_path) -> None:
    out = tmp_path / "fail"
    # trial 1 fails while trial 0 still runs: no trial is launched after it, trial 0 is awaited
    proc = sweep(out, [6, 0.1, 0.1, 0.1], "fail_trials=[1]", check=False)
    assert proc.returncode != 0
    assert "max_failure_rate=0.0" in proc.stderr and "trial 1 failed on purpose" in proc.stderr
    assert states(out) == ["COMPLETE", "FAIL"]
    assert job_dirs(out) == [0, 1]


def test_sigterm_fails_and_requeues_the_running_trials(tmp_path) -> None:
    out = tmp_path / "sigterm"
    proc = subprocess.Popen(command(out, [8, 8]), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not ((out / "0").exists() and (out / "1").exists()) and time.monotonic() < deadline:
        time.sleep(0.1)  # both jobs have started (and sleep)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    assert states(out) == ["FAIL", "FAIL", "WAITING", "WAITING"]
