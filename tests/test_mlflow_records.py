"""What MLflow holds for a job, as MLflow users expect it (README "What MLflow records"):
system metrics, the dataset as run inputs, MLflow's source tags, the model as an
``mlflow.pytorch`` model that ``mlflow.pyfunc`` loads (without running code) and predicts
with, and its registration.

One tiny digits sweep of one job (so a parent run too) against a temporary SQLite store,
shared by the tests below; two in-process checks of the system-metrics thread. Models are
loaded with ``tracking.load_pyfunc`` (MLflow's loader with pickled payloads refused).
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from jobs import ROOT, TINY, run_job, sqlite_uri
from mlflow.entities import LoggedModelStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from data import load_dataset, normalize
from tracking import load_pyfunc
from tracking.dataset_input import digest
from tracking.mlflow_tracker import MlflowTracker, settings_errors

EXPERIMENT = "records"
REGISTERED = "tiny-digits"
CANARY = "canary-pw-7d41"  # a password in the job's environment: must reach no record
CANARY_ENV = {"MIXERLAB_URL_CREDENTIALS": f"postgresql://alice:{CANARY}@db.example:5432",
              "MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": CANARY}


@dataclass
class Job:
    workdir: Path
    uri: str
    client: MlflowClient
    run: object  # the job's mlflow Run
    parent: object
    job_dir: Path


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> Job:
    workdir = tmp_path_factory.mktemp("records")
    uri = sqlite_uri(workdir)
    sweep_dir = workdir / "sweep"
    run_job(["-m", *TINY, "tracking.log_model=true", "data.val_fraction=0.1", f"tracking.uri={uri}",
             f"tracking.experiment={EXPERIMENT}", "tracking.system_metrics_interval_s=1",
             f"tracking.register_model={REGISTERED}", f"hydra.sweep.dir={sweep_dir}"],
            workdir, env=CANARY_ENV)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([exp.experiment_id])
    parent = next(r for r in runs if r.data.tags.get("sweep") == "true")
    run = next(r for r in runs if "mlflow.parentRunId" in r.data.tags)
    return Job(workdir, uri, client, run, parent, sweep_dir / "0")


def _job_data(job: Job):
    """The job's dataset, as the job loaded it (its config, its seed, its cache)."""
    cfg = OmegaConf.load(job.job_dir / ".hydra" / "config.yaml")
    kwargs = OmegaConf.to_container(cfg.data, resolve=True)
    kwargs.pop("augment")
    kwargs["cache_dir"] = str(job.workdir / ".cache")
    return load_dataset(**kwargs, seed=int(cfg.seed))


def test_system_metrics_logged_while_the_run_was_open(job: Job):
    run = job.run
    assert run.info.status == "FINISHED"
    for key in ("system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"):
        history = job.client.get_metric_history(run.info.run_id, key)
        assert len(history) >= 1, key
        assert [m.step for m in history] == list(range(len(history)))
        # stopped before the run was closed: no sample after its end
        assert all(m.timestamp <= run.info.end_time for m in history), key
    # per job, not on the sweep's parent run
    assert not any(k.startswith("system/") for k in job.parent.data.metrics)


def test_dataset_logged_as_run_inputs_with_digest_and_split_sizes(job: Job):
    data = _job_data(job)
    assert data.val_y is not None  # the job held a validation split out
    expected = {"training": (data.train_x, data.train_y), "validation": (data.val_x, data.val_y),
                "testing": (data.test_x, data.test_y)}
    inputs = {next(t.value for t in i.tags if t.key == "mlflow.data.context"): i
              for i in job.run.inputs.dataset_inputs}
    assert set(inputs) == set(expected)
    for context, (x, y) in expected.items():
        dataset = inputs[context].dataset
        assert dataset.name == "digits"
        assert dataset.digest == digest(x.numpy(), y.numpy())
        profile = OmegaConf.to_container(OmegaConf.create(dataset.profile))
        assert profile["features_shape"] == [len(y), 1, 8, 8]
        assert {t.key: t.value for t in inputs[context].tags}["num_samples"] == str(len(y))
        assert dataset.source_type == "code"  # digits ship with scikit-learn: no folder
    assert len(data.train_y) + len(data.val_y) == 1437  # the digits train split, all of it


def test_source_tags_on_job_and_parent(job: Job):
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    for run in (job.run, job.parent):
        tags = run.data.tags
        assert tags["mlflow.source.name"] == "sweep/run.py"
        assert tags["mlflow.source.type"] == "LOCAL"
        assert tags["mlflow.source.git.commit"] == commit
        assert tags["mlflow.user"]


def _model_id(job: Job) -> str:
    outputs = job.run.outputs.model_outputs
    assert len(outputs) == 1
    return outputs[0].model_id


def test_pyfunc_round_trip_gives_the_trained_models_logits(job: Job):
    data = _job_data(job)
    mlflow.set_tracking_uri(job.uri)
    try:
        loaded = load_pyfunc(f"models:/{_model_id(job)}")
        by_version = load_pyfunc(f"models:/{REGISTERED}/1")
    finally:
        mlflow.set_tracking_uri(None)
    meta = loaded.metadata.metadata
    assert meta["mean"] == pytest.approx(list(data.mean))
    assert meta["std"] == pytest.approx(list(data.std))
    x = normalize(data.test_x[:4], data.mean, data.std)  # what predict expects
    scores = loaded.predict(x.numpy())
    assert scores.shape == (4, 10) and scores.dtype == np.float32
    assert np.isfinite(scores).all()
    # the same network rebuilt from the job's checkpoint (weights only)
    cfg = OmegaConf.load(job.job_dir / ".hydra" / "config.yaml")
    model = instantiate(cfg.model).eval()
    state = torch.load(job.job_dir / "checkpoint.pt", weights_only=True)["model"]
    model.load_state_dict(state)
    with torch.no_grad():
        logits = model(x).numpy()
    np.testing.assert_allclose(scores, logits, rtol=1e-5, atol=1e-5)
    # the batch dimension is free; the registered version is the same model
    assert loaded.predict(x[:1].numpy()).shape == (1, 10)
    np.testing.assert_array_equal(by_version.predict(x.numpy()), scores)


def test_model_is_registered_and_linked(job: Job):
    model_id = _model_id(job)
    versions = job.client.search_model_versions(f"name='{REGISTERED}'")
    assert len(versions) == 1
    version = versions[0]
    assert version.source == f"models:/{model_id}" and version.run_id == job.run.info.run_id
    logged = job.client.get_logged_model(model_id)
    assert logged.status == LoggedModelStatus.READY
    assert REGISTERED in logged.tags["mlflow.modelVersions"]
    # the final metrics are the model's too (the UI's Models tab)
    assert {m.key for m in logged.metrics} >= {"final_test_acc", "best_test_acc"}


def test_model_files_hold_no_pickle_and_a_tampered_archive_is_refused(job: Job, tmp_path):
    """The logged files are the pt2 form; a pt2 archive whose sample inputs were replaced by a
    pickle that runs code (torch.export.load would unpickle it after its weights_only try
    fails) is refused by load_pyfunc before anything is unpickled."""
    local = Path(job.client.get_logged_model(_model_id(job)).artifact_location)
    assert sorted(p.name for p in (local / "data").iterdir()) == ["model.pt2"]  # no model.pth
    marker = tmp_path / "code-ran"

    class Payload:  # unpickling this creates ``marker``
        def __reduce__(self):
            return (open, (str(marker), "w"))

    tampered = tmp_path / "tampered"
    shutil.copytree(local, tampered)
    archive = tampered / "data" / "model.pt2"
    with zipfile.ZipFile(local / "data" / "model.pt2") as src, \
            zipfile.ZipFile(archive, "w") as dst:
        for info in src.infolist():
            payload = src.read(info)
            if info.filename.endswith("sample_inputs/model.pt"):
                payload = pickle.dumps(Payload())
            dst.writestr(info, payload)
    with pytest.raises(MlflowException, match="pickle"):
        load_pyfunc(str(tampered))
    assert not marker.exists()
    assert "MLFLOW_ALLOW_PICKLE_DESERIALIZATION" not in os.environ  # restored


def test_no_secret_from_the_environment_reaches_a_record(job: Job, tmp_path):
    records = [str(job.run.data.tags), str(job.run.data.params), str(job.parent.data.tags)]
    records += [str(i.dataset.source) for i in job.run.inputs.dataset_inputs]
    logged = job.client.get_logged_model(_model_id(job))
    records += [str(logged.tags), str(logged.params)]
    files = [p for p in (job.workdir / "mlartifacts").rglob("*") if p.is_file()]
    assert any(p.name == "MLmodel" for p in files)
    records += [p.read_bytes().decode("utf-8", "replace") for p in files]
    assert not [r for r in records if CANARY in r]


def test_tracking_settings_are_checked():
    assert settings_errors() == []
    errors = settings_errors(system_metrics="yes", system_metrics_interval_s=0,
                             log_model=None, register_model="a/b")
    assert [e.split("=")[0] for e in errors] == [
        "tracking.system_metrics", "tracking.system_metrics_interval_s", "tracking.log_model",
        "tracking.register_model"]
    with pytest.raises(ValueError, match="system_metrics_interval_s=-1"):
        MlflowTracker("sqlite:///unused.db", "x", system_metrics_interval_s=-1)


@pytest.mark.parametrize("status", ["FINISHED", "FAILED"])
def test_system_metrics_thread_stops_with_the_run(job: Job, status):
    """A run shorter than one interval still gets a sample; closing it ends the thread at once
    (not after the interval) and nothing is logged after the run's end. (The job's store: a
    new SQLite file costs seconds of schema creation.)"""
    uri = job.uri
    tracker = MlflowTracker(uri, "threads", retries=0, system_metrics_interval_s=30)
    run_id = tracker.start(run_name="r", params={}, tags={})
    assert any(t.name == "SystemMetricsMonitor" for t in threading.enumerate())
    t0 = time.perf_counter()
    tracker.finish(status)
    assert time.perf_counter() - t0 < 5
    assert not any(t.name == "SystemMetricsMonitor" and t.is_alive()
                   for t in threading.enumerate())
    run = MlflowClient(uri).get_run(run_id)
    assert run.info.status == status
    history = MlflowClient(uri).get_metric_history(run_id, "system/cpu_utilization_percentage")
    assert len(history) == 1 and history[0].timestamp <= run.info.end_time
    tracker.close()  # idempotent
