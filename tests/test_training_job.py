"""`python sweep/run.py` trains, logs to MLflow, resumes and fails clearly."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from jobs import RUN, TINY, metric_history, read_metrics_file, run_job, runs, sqlite_uri
from mlflow.tracking import MlflowClient


def test_each_model_logs_a_finished_run_under_the_sweep_parent(tmp_path):
    uri = sqlite_uri(tmp_path)
    run_job(["-m", "model=vanilla,para,sym,asym", *TINY, f"tracking.uri={uri}",
             "tracking.experiment=zoo", "sweep_name=zoo-test",
             f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path)
    all_runs = runs(uri, "zoo")
    parents = [r for r in all_runs if r.data.tags.get("sweep") == "true"]
    children = [r for r in all_runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and parents[0].info.run_name == "zoo-test"
    assert len(children) == 4
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    by_name = {r.info.run_name: r for r in children}
    assert set(by_name) == {"vanilla-d2-w16-s0", "para-d2-w16-s0", "sym-d2-w16-s0",
                            "asym-lam1e-4-d2-w16-s0"}
    for name, run in by_name.items():
        assert run.info.status == "FINISHED", name
        p = run.data.params
        assert p["model.name"] == name.split("-")[0]
        assert (p["model.depth"], p["model.dim"], p["data.name"], p["seed"]) == ("2", "16",
                                                                                  "digits", "0")
        m = run.data.metrics
        for key in ("train_loss", "test_loss", "test_acc", "lr", "epoch_time_s",
                    "images_per_s", "best_test_acc", "num_params"):
            assert key in m, (name, key)
        assert 0 <= m["test_acc"] <= 100
        assert metric_history(uri, run.info.run_id, "test_acc")[0][0] == 1  # step = epoch
        assert {"git_commit", "host", "output_dir"} <= set(run.data.tags)
    assert "symmetry/b1/channel/cos" in by_name["vanilla-d2-w16-s0"].data.metrics
    assert "symmetry/b0/token/v_ratio" in by_name["asym-lam1e-4-d2-w16-s0"].data.metrics
    assert not any(k.startswith("symmetry/") for k in by_name["sym-d2-w16-s0"].data.metrics)
    artifacts = {a.path for a in MlflowClient(uri).list_artifacts(by_name["sym-d2-w16-s0"]
                                                                 .info.run_id)}
    assert {"config", "checkpoint"} <= artifacts


JOB = ["data=digits", "model=asym", "model.dim=64", "model.depth=2", "trainer.epochs=5",
       "trainer.progress=lines", "trainer.lr=4e-3", "model.drop_path=0.1",
       "data.augment.mixup=0.2"]


def test_resume_after_kill_continues_the_same_run_with_identical_metrics(tmp_path):
    uri = sqlite_uri(tmp_path)
    common = [*JOB, f"tracking.uri={uri}", "tracking.experiment=resume"]
    run_job([*common, f"hydra.run.dir={tmp_path / 'straight'}", "run_name=straight"], tmp_path)

    out = tmp_path / "killed"
    args = [*common, f"hydra.run.dir={out}", "run_name=killed"]
    env = {"MIXERLAB_CACHE": str(tmp_path / ".cache")}
    proc = subprocess.Popen([sys.executable, RUN, *args], cwd=tmp_path,
                            env={**__import__("os").environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        f = out / "metrics.jsonl"
        if f.exists() and read_metrics_file(f) and (out / "checkpoint.pt").exists():
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    epochs_done = len(read_metrics_file(out / "metrics.jsonl"))
    assert 1 <= epochs_done < 5, "the job was not interrupted mid-training"

    run_job(args, tmp_path)  # the same command again resumes

    by_name = {r.info.run_name: r for r in runs(uri, "resume")}
    assert set(by_name) == {"straight", "killed"}  # no duplicate run
    straight, killed = by_name["straight"], by_name["killed"]
    assert killed.info.status == "FINISHED"
    for key in ("test_acc", "test_loss", "train_loss"):
        h_killed = metric_history(uri, killed.info.run_id, key)
        h_straight = metric_history(uri, straight.info.run_id, key)
        assert [s for s, _ in h_killed] == [1, 2, 3, 4, 5], key  # no missing or repeated epoch
        assert h_killed == h_straight, key  # identical to the last digit on CPU

    # the resumed process's figures are its own: its compute is the epochs it trained
    rows = read_metrics_file(out / "metrics.jsonl")
    final = MlflowClient(uri).get_run(killed.info.run_id).data.metrics
    trained_here = sum(r["metrics"]["epoch_time_s"] + r["metrics"]["eval_time_s"]
                       for r in rows[epochs_done:])
    assert final["job_time_s"] - final["overhead_s"] == pytest.approx(trained_here, rel=1e-6)

    # the same command after the job finished: nothing is logged a second time
    keys = ("test_acc", "final_test_acc", "job_time_s", "overhead_s")
    before = {k: metric_history(uri, killed.info.run_id, k) for k in keys}
    run_job(args, tmp_path)
    assert {k: metric_history(uri, killed.info.run_id, k) for k in keys} == before
    assert MlflowClient(uri).get_run(killed.info.run_id).info.status == "FINISHED"
    models = MlflowClient(uri).search_logged_models(
        [killed.info.experiment_id], filter_string=f"source_run_id = '{killed.info.run_id}'")
    assert len(models) == 1


def test_same_seed_gives_identical_metrics(tmp_path):
    rows = []
    for name in ("a", "b"):
        run_job([*TINY, "trainer.epochs=2", "tracking.enabled=false",
                 f"hydra.run.dir={tmp_path / name}"], tmp_path)
        # Wall-clock figures (epoch_time_s, eval_time_s, images_per_s) legitimately differ.
        rows.append([{k: v for k, v in r["metrics"].items()
                      if not k.endswith(("_time_s", "_per_s"))}
                     for r in read_metrics_file(tmp_path / name / "metrics.jsonl")])
    assert rows[0] == rows[1]


@pytest.mark.parametrize("override, needle", [
    ("model.sb_lambda=-1", "model.sb_lambda=-1"),
    ("model.depth=0", "model.depth=0"),
    ("model.patch_size=3", "model.patch_size=3 does not divide the image size 8"),
    ("data.root=/nonexistent/fmnist", "/nonexistent/fmnist"),
])
def test_bad_input_fails_before_a_run_is_created(tmp_path, override, needle):
    uri = sqlite_uri(tmp_path)
    data = ["data=fashion_mnist"] if override.startswith("data.root") else []
    proc = run_job([*TINY, *data, override, f"tracking.uri={uri}"], tmp_path, check=False)
    assert proc.returncode != 0
    assert needle in proc.stderr
    assert not (tmp_path / "mlflow.db").exists()  # nothing was tracked


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path):
    proc = run_job(["data=fashion_mnist", "data.root=/nonexistent/fm", "tracking.enabled=false"],
                   tmp_path, check=False)
    assert proc.returncode != 0
    assert "apt-get install dataset-fashion-mnist" in proc.stderr
    assert "train-images-idx3-ubyte" in proc.stderr
