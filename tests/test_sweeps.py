"""Sweeps of the real training task: a SLURM grid logging to an MLflow server, an Optuna study
through submitit, pruning, failures, and bad sweeps rejected before launch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from jobs import RUN, TINY, metric_history, run_job, runs, sqlite_uri
from optuna.trial import TrialState
from services import mlflow_server

from tracking.optuna_storage import open_storage, resolve_storage_url


def study(sweep_dir: Path, name: str = "mixerlab") -> optuna.Study:
    url = resolve_storage_url(None, str(sweep_dir))
    return optuna.load_study(study_name=name, storage=open_storage(url))


def split(all_runs: list) -> tuple[list, list]:
    parents = [r for r in all_runs if r.data.tags.get("sweep") == "true"]
    children = [r for r in all_runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children


@pytest.mark.slurm
def test_slurm_grid_of_four_jobs_logs_to_an_mlflow_server(tmp_path):
    with mlflow_server(tmp_path / "server") as uri:
        run_job(["-m", "hydra/launcher=local_debug", *TINY, "seed=0,1,2,3",
                 f"tracking.uri={uri}", "tracking.experiment=slurm-grid",
                 "sweep_name=slurm-grid", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
                tmp_path, timeout=600)
        parents, children = split(runs(uri, "slurm-grid"))
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 4
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert {r.info.status for r in children} == {"FINISHED"}
    assert sorted(r.info.run_name for r in children) == [f"vanilla-d2-w16-s{i}" for i in range(4)]
    job_ids = {r.data.tags.get("slurm_job_id") for r in children}
    assert len(job_ids) == 4 and all(j and j.isdigit() for j in job_ids)  # one SLURM job each
    assert all(r.data.tags.get("slurm_array_job_id") for r in children)  # one job array


OPTUNA = ["hydra/sweeper=optuna", "hydra.sweeper.direction=maximize",
          "hydra.sweeper.sampler.seed=0", "trainer.lr=tag(log,interval(1e-3,1e-2))",
          "model.dim=choice(8,16)", "tracking.experiment=search", "sweep_name=search"]


def test_optuna_study_through_submitit_persists_and_resumes(tmp_path):
    uri, sweep_dir = sqlite_uri(tmp_path), tmp_path / "sweep"
    base = ["-m", *OPTUNA, "hydra/launcher=submitit_local", *TINY[:2], *TINY[3:],
            "hydra.launcher.timeout_min=10", f"tracking.uri={uri}",
            f"hydra.sweep.dir={sweep_dir}", "hydra.sweeper.n_jobs=2"]
    run_job([*base, "hydra.sweeper.n_trials=6"], tmp_path, timeout=900)
    s = study(sweep_dir)
    assert [t.state for t in s.trials] == [TrialState.COMPLETE] * 6
    parents, children = split(runs(uri, "search"))
    assert len(parents) == 1 and len(children) == 6
    best_mlflow = max(r.data.metrics["val_acc"] for r in children)  # the objective
    assert s.best_value == pytest.approx(best_mlflow)
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(best_mlflow)
    assert {r.data.tags["optuna_trial"] for r in children} == {str(i) for i in range(6)}

    run_job([*base, "hydra.sweeper.n_trials=8"], tmp_path, timeout=600)  # resume
    s = study(sweep_dir)
    assert len(s.trials) == 8 and all(t.state == TrialState.COMPLETE for t in s.trials)
    parents, children = split(runs(uri, "search"))
    assert len(parents) == 1 and len(children) == 8  # same parent, 2 new jobs


def test_optuna_prunes_a_trial_that_learns_nothing_and_survives_a_divergent_one(tmp_path):
    uri, sweep_dir = sqlite_uri(tmp_path), tmp_path / "sweep"
    base = ["-m", "hydra/sweeper=optuna", "hydra.sweeper.direction=maximize",
            "hydra.sweeper.n_jobs=1", "model.dim=choice(16)", *TINY[:2], "trainer.epochs=3",
            "trainer.progress=lines", f"tracking.uri={uri}", "tracking.experiment=prune",
            f"hydra.sweep.dir={sweep_dir}", "hydra.sweeper.max_failure_rate=0.5",
            "hydra.sweeper.pruner={_target_:optuna.pruners.MedianPruner,"
            "n_startup_trials:2,n_warmup_steps:0}"]
    run_job([*base, "hydra.sweeper.n_trials=2", "trainer.lr=4e-3"], tmp_path)
    run_job([*base, "hydra.sweeper.n_trials=3", "trainer.lr=1e-9"], tmp_path)  # learns nothing
    run_job([*base, "hydra.sweeper.n_trials=4", "trainer.lr=1e6"], tmp_path)  # diverges
    s = study(sweep_dir)
    assert [t.state for t in s.trials] == [TrialState.COMPLETE, TrialState.COMPLETE,
                                          TrialState.PRUNED, TrialState.FAIL]
    assert len(s.trials[2].intermediate_values) < 3  # stopped early
    assert "diverged" in s.trials[3].system_attrs.get("fail_reason", "") + str(
        s.trials[3].user_attrs)
    by_trial = {r.data.tags["optuna_trial"]: r for r in split(runs(uri, "prune"))[1]}
    assert by_trial["2"].info.status == "KILLED"
    assert by_trial["2"].data.tags["optuna_state"] == "PRUNED"
    assert by_trial["3"].info.status == "FAILED"
    assert "diverged" in by_trial["3"].data.tags["error"]
    assert [s for s, _ in metric_history(uri, by_trial["2"].info.run_id, "test_acc")] == [1]


def test_grid_finishes_every_job_and_reports_the_failed_ones(tmp_path):
    uri, sweep_dir = sqlite_uri(tmp_path), tmp_path / "sweep"
    proc = run_job(["-m", *TINY, "seed=0,1", "trainer.lr=4e-3,1e6", f"tracking.uri={uri}",
                    "tracking.experiment=partial", f"hydra.sweep.dir={sweep_dir}"],
                   tmp_path, check=False)
    assert proc.returncode != 0
    assert "2 of 4 jobs failed" in proc.stderr
    failed = yaml.safe_load((sweep_dir / "failed_jobs.yaml").read_text())
    assert len(failed) == 2 and all("trainer.lr=1000000.0" in f["overrides"] for f in failed)
    assert all("diverged" in f["error"] for f in failed)
    parents, children = split(runs(uri, "partial"))
    assert parents[0].info.status == "FAILED" and parents[0].data.tags["failed_jobs"] == "2"
    assert "error" not in parents[0].data.tags  # closed once, by the sweeper's own account
    assert sorted(r.info.status for r in children) == ["FAILED", "FAILED", "FINISHED",
                                                      "FINISHED"]


# runs sweep/run.py (argv[1]) with the remaining arguments, then says whether optuna was imported
IMPORT_PROBE = """
import atexit, runpy, sys
atexit.register(lambda: print("optuna imported:", "optuna" in sys.modules, file=sys.stderr))
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_a_grid_sweep_never_imports_optuna(tmp_path):
    """Optuna is the Optuna sweeper's business: a grid's driver and its jobs (in one process
    here) run without importing it; only a trial's job loads sweep/trial_reporter.py."""
    probe = tmp_path / "probe.py"
    probe.write_text(IMPORT_PROBE)
    proc = subprocess.run(
        [sys.executable, str(probe), RUN, "-m", *TINY, "seed=0,1", "tracking.enabled=false",
         f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        cwd=tmp_path, env={**os.environ, "MIXERLAB_CACHE": str(tmp_path / ".cache")},
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "sweep" / "1" / "metrics.jsonl").exists()  # both jobs trained
    assert "optuna imported: False" in proc.stderr, proc.stderr[-3000:]


@pytest.mark.parametrize("overrides, needles", [
    (["model.sb_lambda=0.1,-1", "model.depth=0,2"],
     ["model.sb_lambda=-1 is invalid", "model.depth=0 is invalid", "no job was launched"]),
    (["model.sb_lambda=abc"], ["model.sb_lambda='abc' is invalid"]),
    (["model.patch_size=3"], ["model.patch_size=3 does not divide the image size 8"]),
    (["data.name=nope"], ["data.name='nope' is unknown"]),
    (["model=nope"], ["Could not find 'model/nope'", "vanilla"]),
    (["data=fashion_mnist", "data.root=/nonexistent/fm"], ["/nonexistent/fm"]),
])
def test_bad_grid_is_rejected_before_any_job_is_launched(tmp_path, overrides, needles):
    sweep_dir = tmp_path / "sweep"
    proc = run_job(["-m", *TINY, *overrides, "seed=0,1", "hydra/launcher=submitit_local",
                    f"tracking.uri={sqlite_uri(tmp_path)}", f"hydra.sweep.dir={sweep_dir}"],
                   tmp_path, check=False)
    assert proc.returncode != 0
    for needle in needles:
        assert needle in proc.stderr
    assert not (sweep_dir / ".submitit").exists()  # nothing was submitted
    assert not any(p.is_dir() and p.name.isdigit() for p in sweep_dir.glob("*"))


def test_optuna_empty_interval_is_rejected_before_launch(tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = run_job(["-m", "hydra/sweeper=optuna", *TINY, "model.sb_lambda=interval(1.0,1.0)",
                    "model=asym", "tracking.enabled=false", f"hydra.sweep.dir={sweep_dir}"],
                   tmp_path, check=False)
    assert proc.returncode != 0
    assert "model.sb_lambda" in proc.stderr and "interval" in proc.stderr
    assert not any(p.is_dir() and p.name.isdigit() for p in sweep_dir.glob("*"))


@pytest.mark.parametrize("launcher, cls", [
    ("submitit_slurm", "SlurmLauncher"), ("submitit_local", "LocalLauncher"),
    ("local_debug", "SlurmLauncher"), ("gpu_4", "SlurmLauncher"), ("cpu_ddp2", "SlurmLauncher"),
])
def test_every_submitit_launcher_name_gets_the_launcher_that_survives_a_dead_job(tmp_path,
                                                                                 launcher, cls):
    """`hydra/launcher=submitit_slurm` as users type it, not only our profiles, must select the
    launcher that turns a cancelled job into one failed job instead of a crashed sweep."""
    proc = run_job([f"hydra/launcher={launcher}", "--cfg", "hydra", "-p",
                    "hydra.launcher._target_"], tmp_path)
    assert proc.stdout.strip().splitlines()[-1] == \
        f"hydra_plugins.mixerlab_submitit_launcher.launcher.{cls}"
