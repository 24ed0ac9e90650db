"""An Optuna search optimises what the user means (issue 13), through the real driver
(``sweep/run.py -m hydra/sweeper=optuna``) on tiny digits jobs: without a direction it follows
the objective's sense; a contradicting or missing direction, a direction list of the wrong
length, ``n_trials=0`` and a bad search space fail before any trial is asked; and the sweep's
MLflow parent run ends FAILED with the reason (never RUNNING) on those errors and when too many
trials fail.

All tests log to one SQLite store (its schema is created once), each to its own experiment.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from jobs import TINY, run_job, runs
from mlflow.tracking import MlflowClient

SPACE = ["trainer.lr=tag(log,interval(1e-3,1e-2))"]
FAST = [*TINY, "data.max_train=256", "data.max_test=128", "trainer.batch_size=64"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One MLflow SQLite store for the module (its schema is created here, once)."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    MlflowClient(uri).search_experiments()
    return uri


def optuna_sweep(tmp_path: Path, uri: str, name: str, *overrides: str, check: bool = False):
    """One Optuna sweep of tiny digits jobs into ``tmp_path/sweep``, tracked in experiment
    ``name`` of ``uri``."""
    args = ["-m", "hydra/sweeper=optuna", "hydra.sweeper.sampler.seed=0",
            "hydra.sweeper.n_trials=1", "hydra.sweeper.n_jobs=1", *FAST, *SPACE,
            f"tracking.uri={uri}", f"tracking.experiment={name}", f"sweep_name={name}",
            f"hydra.sweep.dir={tmp_path / 'sweep'}", *overrides]
    return run_job(args, tmp_path, check=check)


def parent_and_children(uri: str, name: str) -> tuple:
    found = runs(uri, name)
    parents = [r for r in found if r.data.tags.get("sweep") == "true"]
    assert len(parents) == 1, [r.data.tags for r in found]
    return parents[0], [r for r in found if "mlflow.parentRunId" in r.data.tags]


def directions(tmp_path: Path) -> list[str]:
    results = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    return results["directions"]


@pytest.mark.parametrize(("objective", "expected"), [
    ([], ["maximize"]),                      # the default objective, val_acc
    (["objective=test_loss"], ["minimize"]),
], ids=["val_acc", "test_loss"])
def test_without_a_direction_the_study_follows_the_objective(tmp_path, store, objective,
                                                             expected):
    name = f"sense-{expected[0]}"
    optuna_sweep(tmp_path, store, name, *objective, check=True)
    assert directions(tmp_path) == expected
    parent, children = parent_and_children(store, name)
    assert parent.info.status == "FINISHED" and len(children) == 1


def test_a_confirmed_mismatch_runs(tmp_path, store):
    proc = optuna_sweep(tmp_path, store, "confirmed", "hydra.sweeper.direction=minimize",
                        "hydra.sweeper.allow_direction_mismatch=true", check=True)
    assert directions(tmp_path) == ["minimize"]
    assert "against its known sense" in proc.stderr + proc.stdout


@pytest.mark.parametrize(("overrides", "needles"), [
    (["objective=symmetry/b0/token/cos"],
     ["objective='symmetry/b0/token/cos' has no known sense", "hydra.sweeper.direction="]),
    (["hydra.sweeper.direction=minimize"],
     ["hydra.sweeper.direction=minimize would minimize objective='val_acc'",
      "known sense is maximize", "hydra.sweeper.allow_direction_mismatch=true"]),
    (["hydra.sweeper.direction=[maximize,minimize]"],
     ["has 2 entries but objective=['val_acc'] has 1"]),
    (["objective=[test_acc,num_params]", "hydra.sweeper.direction=maximize"],
     ["has 1 entries but objective=['test_acc', 'num_params'] has 2"]),
    (["hydra.sweeper.n_trials=0"], ["hydra.sweeper.n_trials=0 is invalid", ">= 1"]),
    (["trainer.weight_decay=interval(1,0)"],
     ["'trainer.weight_decay'", "interval(1,0)", "low < high"]),
    (["model.dim=glob(*)"], ["'model.dim'", "glob(*)", "does not support"]),
], ids=["unknown-sense", "contradiction", "too-many-directions", "too-few-directions",
        "no-trials", "reversed-interval", "glob"])
def test_a_bad_setting_fails_before_any_trial_and_fails_the_parent_run(tmp_path, store, request,
                                                                       overrides, needles):
    name = "bad-" + request.node.callspec.id
    proc = optuna_sweep(tmp_path, store, name, *overrides)
    assert proc.returncode != 0
    for needle in needles:
        assert needle in proc.stderr, proc.stderr[-3000:]
    sweep_dir = tmp_path / "sweep"
    assert not (sweep_dir / "optuna_journal.log").exists()  # no study opened, no trial asked
    assert not any(p.is_dir() and p.name.isdigit() for p in sweep_dir.iterdir())
    parent, children = parent_and_children(store, name)
    assert children == []
    assert parent.info.status == "FAILED"
    assert needles[0] in parent.data.tags["error"]


def test_an_empty_choice_is_rejected_by_hydra_before_the_sweep_starts(tmp_path, store):
    proc = optuna_sweep(tmp_path, store, "empty-choice", "model.dim=choice()")
    assert proc.returncode != 0
    assert "model.dim=choice()" in proc.stderr and "empty choice" in proc.stderr
    # Hydra's own parser rejects it before the parent run (or anything else) is created
    assert MlflowClient(store).get_experiment_by_name("empty-choice") is None
    assert not (tmp_path / "sweep").exists()


def test_too_many_failed_trials_fails_the_parent_run_with_the_reason(tmp_path, store):
    proc = optuna_sweep(tmp_path, store, "failing", "trainer.lr=1e6", "model.dim=choice(8,16)",
                        "hydra.sweeper.n_trials=3")
    assert proc.returncode != 0
    assert "max_failure_rate=0.0" in proc.stderr
    parent, children = parent_and_children(store, "failing")
    assert [c.info.status for c in children] == ["FAILED"]  # stopped after the first trial
    assert parent.info.status == "FAILED"
    assert "TooManyFailedTrials" in parent.data.tags["error"]
    assert "diverged" in parent.data.tags["error"]
    assert parent.data.tags["optuna.n_complete"] == "0"  # the results were logged first
