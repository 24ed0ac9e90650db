"""Pins on the private (or "not recommended") library APIs the project still relies on, each
where no public API does the job. Every test here fails when the library changes what the
project's comment next to that use says it relies on: update the use, then the pin.

One section per library; each names the project file that relies on it.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

# --- Hydra: hydra._internal BasicSweeper (hydra_plugins/mixerlab_grid_sweeper/grid_sweeper.py)


def test_basic_sweeper_still_expands_grids_as_the_grid_sweeper_uses_it():
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    sweeper = BasicSweeper(max_batch_size=2, params={"a": "1,2"})
    # the attributes GridSweeper reads or sets (setup fills hydra_context, config, launcher)
    for name in ("overrides", "max_batch_size", "params", "hydra_context", "config",
                 "launcher"):
        assert hasattr(sweeper, name), name
    assert list(inspect.signature(BasicSweeper.setup).parameters) == [
        "self", "hydra_context", "task_function", "config"]
    params = sweeper._parse_config()
    assert params == ["a=1,2"]
    overrides = OverridesParser.create().parse_overrides([*params, "b=x,y", "c=3"])
    batches = sweeper.split_arguments(overrides, sweeper.max_batch_size)
    assert batches == [[["a=1", "b=x", "c=3"], ["a=1", "b=y", "c=3"]],
                       [["a=2", "b=x", "c=3"], ["a=2", "b=y", "c=3"]]]
    sweeper.overrides = batches
    seen = []
    while not sweeper.is_done():
        seen.append(sweeper.get_job_batch())
    assert seen == batches


def test_a_failed_job_return_holds_its_exception_in_the_return_value_field():
    """GridSweeper reads a failed job's exception from ``_return_value`` (the public
    ``return_value`` raises it); the submitit launcher builds FAILED returns with that field."""
    err = RuntimeError("boom")
    ret = JobReturn(overrides=["a=1"], status=JobStatus.FAILED, _return_value=err)
    assert ret._return_value is err
    with pytest.raises(RuntimeError, match="boom"):
        _ = ret.return_value


# --- hydra-submitit-launcher: BaseSubmititLauncher.launch
# (hydra_plugins/mixerlab_submitit_launcher/launcher.py)


class _Job:
    def __init__(self, overrides: list[str], idx: int, dies: bool) -> None:
        self.job_id, self.overrides, self.idx, self.dies = f"fake{idx}", overrides, idx, dies

    def done(self) -> bool:
        return True

    def results(self) -> list[JobReturn]:
        if self.dies:
            from submitit.core.utils import UncompletedJobError

            raise UncompletedJobError(f"Job {self.job_id} has not produced any output")
        return [JobReturn(overrides=self.overrides, status=JobStatus.COMPLETED,
                          _return_value=self.idx)]


class _Executor:
    """Stands in for submitit.AutoExecutor: job 1 of each array dies without a result."""

    def __init__(self, folder: str, cluster: str, **kwargs: object) -> None:
        self.cluster = cluster

    def update_parameters(self, **kwargs: object) -> None:
        pass

    def map_array(self, fn: object, *iterable: list) -> list[_Job]:
        # the plugin maps the launcher over (overrides, job dir key, job number, id, state)
        return [_Job(args[0], args[2], dies=args[2] == 1) for args in zip(*iterable, strict=True)]


def test_submitit_launch_still_builds_its_executor_and_collects_results_as_we_rely_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Our launcher runs the plugin's ``launch`` while ``submitit.AutoExecutor`` names a
    subclass whose jobs answer ``results()`` for a dead job with its error: that works only
    while the plugin looks the executor up at call time, maps the jobs with ``map_array`` and
    collects ``results()[0]``."""
    import submitit

    from hydra_plugins.mixerlab_submitit_launcher.launcher import LocalLauncher, _JobDied

    monkeypatch.setattr(submitit, "AutoExecutor", _Executor)
    launcher = LocalLauncher(submitit_folder=str(tmp_path / ".submitit"), timeout_min=1)
    launcher.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    returns = launcher.launch([["x=0"], ["x=1"], ["x=2"]], initial_job_idx=0)
    assert [r.status for r in returns] == [JobStatus.COMPLETED, JobStatus.FAILED,
                                          JobStatus.COMPLETED]
    assert [returns[0].return_value, returns[2].return_value] == [0, 2]
    assert returns[1].overrides == ["x=1"]
    assert isinstance(returns[1]._return_value, _JobDied)
    assert "job fake1 ended without a result" in str(returns[1]._return_value)
    assert submitit.AutoExecutor is _Executor  # restored after the launch


# --- Optuna: the Trial constructor ("not recommended") (sweep/trial_reporter.py)


def test_a_job_reattaches_to_its_running_trial_and_reports_to_it(tmp_path: Path):
    import optuna

    from sweep.epoch_reporter import Pruned
    from sweep.trial_reporter import TrialPruned, TrialReporter
    from tracking.optuna_storage import open_storage

    url = f"journal://{tmp_path / 'journal.log'}"
    study = optuna.create_study(study_name="pins", storage=open_storage(url))
    study.ask()
    running = study.ask()  # trial 1: started by "the sweeper", reported to by "the job"
    cfg = OmegaConf.create({"optuna": {"storage": url, "study_name": "pins",
                                       "trial": running.number}})
    reporter = TrialReporter.from_config(cfg)
    assert reporter is not None and reporter.number == 1
    reporter.report(0.5, step=0)
    reporter.report(0.25, step=1)
    trials = optuna.load_study(study_name="pins", storage=open_storage(url)).trials
    assert trials[1].intermediate_values == {0: 0.5, 1: 0.25}
    assert trials[0].intermediate_values == {}
    assert issubclass(TrialPruned, optuna.TrialPruned) and issubclass(TrialPruned, Pruned)


# --- Hydra: JobReturn._return_value (hydra_plugins/mixerlab_optuna_sweeper/_trial_outcome.py)


def test_the_optuna_sweeper_reads_a_failed_jobs_exception_as_hydra_stores_it(
        capsys: pytest.CaptureFixture[str]):
    """The Optuna sweeper tells a PRUNED or FAIL trial from the exception hydra.core.utils.run_job
    stores with ``ret.return_value = e``; it reads the ``_return_value`` field because the
    public ``return_value`` re-raises it after writing "Error executing job" to stderr, which is
    false for a pruned trial."""
    import optuna
    from optuna.trial import TrialState

    from hydra_plugins.mixerlab_optuna_sweeper._trial_outcome import outcome_of

    def failed(err: BaseException) -> JobReturn:
        ret = JobReturn(overrides=["x=1"])
        ret.return_value = err  # as run_job stores a task's exception
        ret.status = JobStatus.FAILED
        return ret

    assert outcome_of(failed(optuna.TrialPruned("epoch 1")), 1).state == TrialState.PRUNED
    crashed = outcome_of(failed(RuntimeError("boom")), 1)
    assert (crashed.state, crashed.reason) == (TrialState.FAIL, "RuntimeError: boom")
    assert capsys.readouterr().err == ""  # nothing printed for either
    with pytest.raises(optuna.TrialPruned):
        _ = failed(optuna.TrialPruned()).return_value
    assert "Error executing job" in capsys.readouterr().err  # why the field is read instead


# --- MLflow: the records of a job (tracking/system_metrics.py, dataset_input.py,
# logged_model.py)


def test_system_metrics_monitor_has_the_members_the_job_stops_it_with():
    """tracking/system_metrics.py stops the monitor and writes its last samples itself before
    the run is closed: finish(), aggregate_metrics(), publish_metrics(), mlflow_logger.flush()
    and mlflow_logger.data."""
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    params = inspect.signature(SystemMetricsMonitor.__init__).parameters
    assert "run_id" in params and "sampling_interval" in params
    for name in ("start", "finish", "aggregate_metrics", "publish_metrics"):
        assert callable(getattr(SystemMetricsMonitor, name)), name
    logger_src = inspect.getsource(SystemMetricsMonitor.__init__)
    assert "self.mlflow_logger" in logger_src


def test_numpy_dataset_still_converts_to_a_dataset_entity():
    """tracking/dataset_input.py builds DatasetInputs from ``NumpyDataset._to_mlflow_entity``
    (log_input would also start a run of its own client)."""
    import numpy as np
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.numpy_dataset import NumpyDataset
    from mlflow.entities import Dataset

    ds = NumpyDataset(features=np.zeros((2, 3)), targets=np.zeros(2),
                      source=CodeDatasetSource(tags={}), name="x")
    entity = ds._to_mlflow_entity()
    assert isinstance(entity, Dataset) and entity.name == "x"


def test_pytorch_loader_reads_the_pickle_switch_that_load_pyfunc_sets():
    """tracking.load_pyfunc refuses pickled payloads by setting
    MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false around the load; MLflow's pytorch loader must
    still consult it (its default is true)."""
    import mlflow.pytorch as mp
    from mlflow.environment_variables import MLFLOW_ALLOW_PICKLE_DESERIALIZATION

    from tracking.logged_model import ALLOW_PICKLE_ENV

    assert MLFLOW_ALLOW_PICKLE_DESERIALIZATION.name == ALLOW_PICKLE_ENV
    assert "MLFLOW_ALLOW_PICKLE_DESERIALIZATION.get()" in inspect.getsource(
        mp._is_pickle_deserialization_allowed)
    # the pt2 (torch.export) branch checks the archive only when pickle is not allowed
    assert "if not _is_pickle_deserialization_allowed():" in inspect.getsource(mp._load_model)
