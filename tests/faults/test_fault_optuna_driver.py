"""The Optuna sweep driver killed mid-study, then restarted with the same command (same
hydra.sweep.dir): the study resumes from its journal in the sweep dir, finished trials are not
rerun, the trial that was running is marked FAIL and rerun with the same parameters, and its
MLflow run is closed (KILLED by SIGTERM, or FAILED after SIGKILL), never left RUNNING."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from jobs import RUN, read_metrics_file, run_job, runs, sqlite_uri
from optuna.trial import TrialState

from tracking.optuna_storage import open_storage, resolve_storage_url


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_optuna_driver_resumes_without_losing_or_repeating_trials(tmp_path, sig):
    uri, sweep_dir = sqlite_uri(tmp_path), tmp_path / "sweep"
    args = ["-m", "hydra/sweeper=optuna", "hydra.sweeper.direction=maximize",
            "hydra.sweeper.sampler.seed=0", "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=1",
            "trainer.lr=tag(log,interval(1e-3,1e-2))", "model.dim=choice(8,16)", "data=digits",
            "model.depth=2", "trainer.epochs=3", "trainer.batch_size=4", "trainer.threads=1",
            "trainer.progress=lines", f"tracking.uri={uri}", "tracking.experiment=driver",
            "sweep_name=driver", f"hydra.sweep.dir={sweep_dir}"]
    env = {**os.environ, "MIXERLAB_CACHE": str(tmp_path / ".cache")}
    proc = subprocess.Popen([sys.executable, RUN, *args], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    running = sweep_dir / "1" / "metrics.jsonl"
    deadline = time.time() + 180
    while not (running.exists() and read_metrics_file(running)):  # trial 1 is mid-training
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()[-3000:]
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    study = optuna.load_study(study_name="mixerlab",
                              storage=open_storage(resolve_storage_url(None, str(sweep_dir))))
    if sig == signal.SIGTERM:  # the driver itself fails and re-enqueues its running trial
        assert [t.state for t in study.trials[:2]] == [TrialState.COMPLETE, TrialState.FAIL]
        # ... and closes the sweep's parent run as FAILED with the reason, not RUNNING
        parent = next(r for r in runs(uri, "driver") if r.data.tags.get("sweep") == "true")
        assert parent.info.status == "FAILED" and "SIGTERM" in parent.data.tags["error"]
    else:  # SIGKILL: nothing could run; the trial is left RUNNING for the restart to recover
        assert [t.state for t in study.trials[:2]] == [TrialState.COMPLETE, TrialState.RUNNING]

    run_job(args, tmp_path)  # the same command again

    study = optuna.load_study(study_name="mixerlab",
                              storage=open_storage(resolve_storage_url(None, str(sweep_dir))))
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE,
                      TrialState.COMPLETE], states
    interrupted = study.trials[1]
    assert interrupted.system_attrs["fail_reason"] == "driver interrupted"
    rerun = [t for t in study.trials if t.user_attrs.get("requeued_from") == 1]
    assert len(rerun) == 1 and rerun[0].params == interrupted.params  # rerun, not lost
    assert sorted(p.name for p in sweep_dir.iterdir() if p.name.isdigit()) == \
        ["0", "1", "2", "3"]  # no job dir overwritten

    all_runs = runs(uri, "driver")
    parents = [r for r in all_runs if r.data.tags.get("sweep") == "true"]
    children = {}
    for r in all_runs:
        if "mlflow.parentRunId" in r.data.tags:
            children.setdefault(r.data.tags["optuna_trial"], []).append(r)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert "error" not in parents[0].data.tags  # the interrupted attempt's reason is cleared
    assert sorted(children) == ["0", "1", "2", "3"]
    assert all(len(v) == 1 for v in children.values())  # trial 0 was not rerun
    assert {children[n][0].info.status for n in ("0", "2", "3")} == {"FINISHED"}
    killed = children["1"][0]
    if sig == signal.SIGTERM:
        assert killed.info.status == "KILLED" and "SIGTERM" in killed.data.tags["error"]
    else:
        assert killed.info.status == "FAILED" and "killed" in killed.data.tags["error"]
    assert study.best_value == pytest.approx(
        max(children[n][0].data.metrics["val_acc"] for n in ("0", "2", "3")))  # objective
