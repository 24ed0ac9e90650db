"""The Optuna sweeper plugin (hydra/sweeper=optuna), end to end on the toy app in tests/apps.

Each sweep runs ``tests/apps/toy_task.py -m`` in a subprocess with the venv's Python and reads
the study back from its journal storage.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from hydra_plugins.mixerlab_optuna_sweeper._job_overrides import quote_for_override
from hydra_plugins.mixerlab_optuna_sweeper._search_space import build_search_space
from hydra_plugins.mixerlab_optuna_sweeper.optuna_sweeper import (
    OBJECTIVE_SENSE,
    resolve_directions,
)
from tracking.optuna_storage import open_storage, resolve_storage_url

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "tests" / "apps" / "toy_task.py"
PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv").exists() else sys.executable
SPACE = ["x=interval(-5,5)", "y=range(0,4)", "c=choice(a,b,c)"]
MEDIAN = "hydra.sweeper.pruner={_target_:optuna.pruners.MedianPruner,n_startup_trials:2," \
         "n_warmup_steps:1}"
EPOCHS = 4  # tests/apps/conf/toy.yaml
# the toy task has no `objective` key to take the direction from: it minimizes its value
MINIMIZE = "hydra.sweeper.direction=minimize"


def sweep(sweep_dir: Path, *overrides: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the toy app as an Optuna multirun into ``sweep_dir`` (minimizing unless told)."""
    direction = [] if any(o.startswith("hydra.sweeper.direction=") for o in overrides) \
        else [MINIMIZE]
    cmd = [PYTHON, str(APP), "-m", "hydra/sweeper=optuna", f"hydra.sweep.dir={sweep_dir}",
           "hydra.sweeper.sampler.seed=0", *direction, *overrides]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def load(sweep_dir: Path) -> optuna.Study:
    storage = open_storage(resolve_storage_url(None, str(sweep_dir)))
    return optuna.load_study(study_name="toy", storage=storage)


def states(study: optuna.Study) -> list[str]:
    return [t.state.name for t in study.trials]


def results(sweep_dir: Path) -> dict:
    return yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())


def job_dirs(sweep_dir: Path) -> list[int]:
    return sorted(int(p.name) for p in sweep_dir.iterdir() if p.name.isdigit())


# --- end to end -------------------------------------------------------------------------------

def test_tpe_sweep_persists_and_resumes_to_the_total(tmp_path: Path) -> None:
    out = tmp_path / "tpe"
    first = sweep(out, *SPACE, "hydra.sweeper.n_trials=6", "hydra.sweeper.n_jobs=2")
    study = load(out)
    assert states(study) == ["COMPLETE"] * 6
    best = results(out)
    assert best["best_value"] == min(t.value for t in study.trials)
    assert best["n_trials"]["COMPLETE"] == 6
    assert set(best["best_params"]) == {"x", "y", "c"}
    assert (out / "trials.csv").read_text().count("\n") == 7
    assert "sweeper overhead:" in first.stderr + first.stdout
    first_job = (out / "0" / ".hydra" / "overrides.yaml").read_text()

    sweep(out, *SPACE, "hydra.sweeper.n_trials=8", "hydra.sweeper.n_jobs=2")
    study = load(out)
    assert states(study) == ["COMPLETE"] * 8  # exactly 2 more
    assert job_dirs(out) == list(range(8))
    for number in range(8):  # job dir k ran trial k: nothing was overwritten
        overrides = yaml.safe_load((out / str(number) / ".hydra" / "overrides.yaml").read_text())
        assert f"optuna.trial={number}" in overrides
    assert (out / "0" / ".hydra" / "overrides.yaml").read_text() == first_job
    assert results(out)["best_value"] == min(t.value for t in study.trials)


def test_submitit_local_launcher(tmp_path: Path) -> None:
    out = tmp_path / "submitit"
    # asynchronous (the default): 3 jobs in flight, the next submitted as soon as one ends
    sweep(out, *SPACE, "hydra/launcher=submitit_local", "hydra.sweeper.n_trials=6",
          "hydra.sweeper.n_jobs=3", MEDIAN)
    study = load(out)
    assert len(study.trials) == 6
    assert set(states(study)) <= {"COMPLETE", "PRUNED"}  # pruning works across processes too
    assert job_dirs(out) == list(range(6))
    assert results(out)["best_value"] == min(
        t.value for t in study.trials if t.state == TrialState.COMPLETE)


def test_median_pruner_prunes_trials_that_do_not_learn(tmp_path: Path) -> None:
    out = tmp_path / "prune"
    sweep(out, *SPACE, "hydra.sweeper.n_trials=3", MEDIAN)
    sweep(out, *SPACE, "hydra.sweeper.n_trials=5", MEDIAN, "learn=false")
    study = load(out)
    bad = [t for t in study.trials if t.user_attrs.get("learn") == "false"]
    assert [t.state for t in bad] == [TrialState.PRUNED] * 2
    for trial in bad:
        assert len(trial.intermediate_values) < EPOCHS
        assert trial.value == trial.intermediate_values[trial.last_step]


def test_crashing_trials_fail_with_reason_and_failure_rate_applies(tmp_path: Path) -> None:
    out = tmp_path / "crash"
    sweep(out, *SPACE, "hydra.sweeper.n_trials=2")
    sweep(out, *SPACE, "hydra.sweeper.n_trials=4", "crash=true",
          "hydra.sweeper.max_failure_rate=0.5")  # 2 of 4 fail: the search finishes
    study = load(out)
    assert states(study) == ["COMPLETE"] * 2 + ["FAIL"] * 2
    for trial in study.trials[2:]:
        assert "toy task crashed on purpose" in trial.user_attrs["fail_reason"]

    strict = tmp_path / "strict"
    proc = sweep(strict, *SPACE, "hydra.sweeper.n_trials=6", "crash=true", check=False)
    assert proc.returncode != 0
    assert "max_failure_rate=0.0" in proc.stderr and "toy task crashed on purpose" in proc.stderr
    assert states(load(strict)) == ["FAIL"] * 2  # stopped after the first batch
    assert results(strict)["n_trials"]["FAIL"] == 2


def test_nan_result_fails_the_trial_and_the_sweep_goes_on(tmp_path: Path) -> None:
    out = tmp_path / "nan"
    proc = sweep(out, *SPACE, "hydra.sweeper.n_trials=4", "return_nan=true",
                 "hydra.sweeper.max_failure_rate=1.0", check=False)
    # every trial ran; with no trial completed the sweep then fails (issue 14)
    assert proc.returncode != 0 and "all 4 trials failed" in proc.stderr
    study = load(out)
    assert states(study) == ["FAIL"] * 4
    assert all("nan" in t.user_attrs["fail_reason"] for t in study.trials)
    assert results(out)["best_value"] is None


def test_invalid_search_space_fails_before_launching(tmp_path: Path) -> None:
    out = tmp_path / "invalid"
    proc = sweep(out, "x=interval(-5,5)", "y=interval(2,1)", check=False)
    assert proc.returncode != 0
    assert "'y'" in proc.stderr and "interval(2,1)" in proc.stderr and "low < high" in proc.stderr
    assert not out.exists() or job_dirs(out) == []


def test_multi_objective_writes_the_pareto_front(tmp_path: Path) -> None:
    out = tmp_path / "multi"
    sweep(out, "x=interval(-5,5)", "multi_objective=true", "hydra.sweeper.n_trials=6",
          "hydra.sweeper.direction=[minimize,minimize]", MEDIAN)
    study = load(out)
    front = results(out)["pareto_front"]
    assert sorted(t["number"] for t in front) == sorted(t.number for t in study.best_trials)
    assert front and all(len(t["values"]) == 2 and "x" in t["params"] for t in front)
    assert all(not t.intermediate_values for t in study.trials)  # no reporter: no pruning


@pytest.mark.slow  # ~15 s: MLflow's SQLite schema set-up dominates
def test_custom_search_space_and_mlflow_parent_run(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    out = tmp_path / "mlflow"
    out.mkdir()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("sweeps", (tmp_path / "artifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id
    (out / ".mlflow_parent_run.json").write_text(json.dumps({"tracking_uri": uri,
                                                            "run_id": run_id}))
    sweep(out, "x=interval(-5,5)", "hydra.sweeper.n_trials=2",
          "hydra.sweeper.custom_search_space=toy_search_space.extra_params")
    study = load(out)
    assert all(set(t.params) == {"x", "y"} and t.user_attrs["c"] == "b" for t in study.trials)
    assert sorted(a.path for a in client.list_artifacts(run_id, "optuna")) == \
        ["optuna/optimization_results.yaml", "optuna/trials.csv"]
    tags = client.get_run(run_id).data.tags
    assert tags["optuna.n_complete"] == "2"
    assert float(tags["optuna.best_value"]) == results(out)["best_value"]


def test_stale_running_trial_is_failed_and_rerun(tmp_path: Path) -> None:
    out = tmp_path / "stale"
    sweep(out, *SPACE, "hydra.sweeper.n_trials=2")
    study = load(out)
    stale = study.ask()  # a trial a killed driver left RUNNING
    params = {"x": stale.suggest_float("x", -5, 5), "y": stale.suggest_int("y", 0, 3),
              "c": stale.suggest_categorical("c", ["a", "b", "c"])}

    sweep(out, *SPACE, "hydra.sweeper.n_trials=4")
    study = load(out)
    old = study.trials[stale.number]
    assert old.state == TrialState.FAIL
    assert old.system_attrs["fail_reason"] == "driver interrupted"
    rerun = [t for t in study.trials if t.user_attrs.get("requeued_from") == stale.number]
    assert len(rerun) == 1 and rerun[0].state == TrialState.COMPLETE
    assert rerun[0].params == params
    # the interrupted trial does not use up the budget: 4 trials really ran
    assert states(study).count("COMPLETE") == 4


def test_sigterm_fails_and_requeues_the_running_batch(tmp_path: Path) -> None:
    out = tmp_path / "sigterm"
    cmd = [PYTHON, str(APP), "-m", "hydra/sweeper=optuna", f"hydra.sweep.dir={out}", MINIMIZE,
           *SPACE, "hydra.sweeper.n_trials=2", "sleep_s=30"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not (out / "0").exists() and time.monotonic() < deadline:
        time.sleep(0.1)  # the first job has started (and sleeps)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    assert proc.returncode != 0
    study = load(out)
    assert states(study) == ["FAIL", "FAIL", "WAITING", "WAITING"]

    sweep(out, *SPACE, "hydra.sweeper.n_trials=2")
    study = load(out)
    assert states(study) == ["FAIL", "FAIL", "COMPLETE", "COMPLETE"]
    assert [t.params for t in study.trials[2:]] == [t.params for t in study.trials[:2]]
    assert job_dirs(out) == [0, 2, 3]


# --- units ------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("p=interval(1,1)", "low < high"),
        ("p=interval(2,1)", "low < high"),
        ("p=int(interval(5,1))", "low < high"),
        ("p=tag(log,interval(0,1))", "0 < low"),
        ("p=tag(log,interval(-1,1))", "0 < low"),
        ("p=range(3,1)", "is empty"),
        ("p=range(1,3,-1)", "is empty"),
        ("p=choice()", "empty choice"),
        ("p=glob(*)", "does not support"),
    ],
)
def test_search_space_validation_names_parameter_and_value(override: str, message: str) -> None:
    with pytest.raises(ValueError) as err:
        build_search_space([override])
    assert "'p'" in str(err.value) and message in str(err.value)
    assert override.split("=", 1)[1] in str(err.value)


def test_search_space_grammar() -> None:
    space = build_search_space([
        "a=interval(0,1)", "b=int(interval(1,10))", "c=tag(log,interval(1e-4,1e-2))",
        "d=range(1,5)", "e=range(0,1,0.25)", "f=choice(x,'y z',[1,2])", "g=3", "a=0.5",
    ])
    dists = space.distributions
    assert set(dists) == {"b", "c", "d", "e", "f"}  # the later fixed a=0.5 wins
    assert space.fixed == {"g": "3", "a": "0.5"}
    assert (dists["b"].low, dists["b"].high) == (1, 10)
    assert dists["c"].log and math.isclose(dists["c"].low, 1e-4)
    # stop included, as in the stock plugin (issue 14)
    assert (dists["d"].low, dists["d"].high, dists["d"].step) == (1, 5, 1)
    assert (dists["e"].low, dists["e"].high, dists["e"].step) == (0.0, 1.0, 0.25)
    assert space.override_for("f", "y z") == "f=y\\ z"
    assert space.override_for("f", "[1,2]") == "f=[1,2]"  # a list choice stays a list


def test_storage_strings(tmp_path: Path) -> None:
    assert resolve_storage_url(None, str(tmp_path)) == \
        f"journal://{tmp_path}/optuna_journal.log"
    assert resolve_storage_url("journal:///abs/x.log", "d") == "journal:///abs/x.log"
    assert resolve_storage_url("sqlite:///rel.db", "d").startswith("sqlite:////")
    assert resolve_storage_url("postgresql://u@h/db", "d") == "postgresql://u@h/db"
    from hydra.core.override_parser.overrides_parser import OverridesParser

    tricky = "journal:///tmp/it's a ${dir}\\/x.log"
    parsed = OverridesParser.create().parse_override("k=" + quote_for_override(tricky))
    assert parsed.value().replace("\\${", "${") == tricky


def test_every_final_metric_a_job_reports_has_a_known_sense() -> None:
    from sweep.validate import FINAL_METRICS

    assert set(OBJECTIVE_SENSE) == set(FINAL_METRICS)
    assert {OBJECTIVE_SENSE[m] for m in ("test_acc", "val_acc", "best_test_acc")} == {"maximize"}
    assert {OBJECTIVE_SENSE[m] for m in ("test_loss", "val_loss", "num_params")} == {"minimize"}


@pytest.mark.parametrize(("direction", "objectives", "allow", "expected"), [
    (None, ["test_acc"], False, ["maximize"]),
    (None, ["test_loss"], False, ["minimize"]),
    (None, ["num_params", "final_test_acc"], False, ["minimize", "maximize"]),
    ("maximize", ["test_acc"], False, ["maximize"]),
    ("MINIMIZE", ["symmetry/b0/token/cos"], False, ["minimize"]),  # explicit: any sense
    (["minimize", "maximize"], ["test_acc", "test_loss"], True, ["minimize", "maximize"]),
    ("minimize", None, False, ["minimize"]),  # a task config without `objective`
])
def test_directions_follow_or_match_the_objectives(direction, objectives, allow,
                                                   expected) -> None:
    assert resolve_directions(direction, objectives, allow) == expected


@pytest.mark.parametrize(("direction", "objectives", "needles"), [
    (None, ["symmetry/b0/token/cos"], ["objective='symmetry/b0/token/cos' has no known sense",
                                       "test_acc: maximize"]),
    (None, None, ["no", "'objective' key", "hydra.sweeper.direction=minimize or maximize"]),
    (None, [], ["objective=[] names no metric"]),
    ("minimize", ["test_acc"], ["direction=minimize would minimize objective='test_acc'",
                                "known sense is maximize", "allow_direction_mismatch=true"]),
    (["maximize", "maximize"], ["test_acc", "test_loss"],
     ["direction=[maximize,maximize] would maximize objective='test_loss'"]),
    (["maximize", "minimize"], ["test_acc"], ["has 2 entries but objective=['test_acc'] has 1"]),
    ("upward", ["test_acc"], ["direction='upward' is invalid", "'minimize' or 'maximize'"]),
    ([], ["test_acc"], ["direction=[] is invalid"]),
])
def test_a_wrong_or_missing_direction_names_key_value_and_what_is_valid(
        direction, objectives, needles) -> None:
    with pytest.raises(ValueError) as err:
        resolve_directions(direction, objectives, allow_mismatch=False)
    message = str(err.value)
    assert "\n" not in message  # one line
    for needle in needles:
        assert needle in message


def test_driver_journal_appends_without_fsync_and_optuna_reads_them(tmp_path, monkeypatch):
    import os

    from hydra_plugins.mixerlab_optuna_sweeper._driver_journal import driver_journal

    url = f"journal://{tmp_path / 'j.log'}"
    open_storage(url)  # creates the file, as the sweeper does first

    def no_fsync(fd: int) -> None:
        raise AssertionError("the driver's journal appends must not fsync")

    monkeypatch.setattr(os, "fsync", no_fsync)
    study = optuna.create_study(study_name="d", storage=driver_journal(str(tmp_path / "j.log")))
    for x in (1.0, 2.0):
        trial = study.ask()
        trial.suggest_float("x", 0, 5)
        study.tell(trial, x)
    monkeypatch.undo()
    # a job or the analysis opens the same file with Optuna's own backend
    other = optuna.load_study(study_name="d", storage=open_storage(url))
    assert [t.value for t in other.trials] == [1.0, 2.0]
    assert all(t.state == TrialState.COMPLETE for t in other.trials)
