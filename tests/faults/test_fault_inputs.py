"""Corrupt inputs at job level (`python sweep/run.py`, as a user runs it): a truncated dataset
file, a corrupt checkpoint on resume, a cache file from another dataset version."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import torch
from jobs import TINY, run_job, runs, sqlite_uri
from mlflow.tracking import MlflowClient

FASHION = Path("/usr/share/datasets/fashion-mnist")


def no_runs(uri: str, experiment: str) -> bool:
    exp = MlflowClient(uri).get_experiment_by_name(experiment)
    return exp is None or not MlflowClient(uri).search_runs([exp.experiment_id])


def test_truncated_idx_file_fails_the_job_naming_the_file(tmp_path):
    root = tmp_path / "fmnist"
    shutil.copytree(FASHION, root)
    cut = root / "train-images-idx3-ubyte.gz"
    cut.write_bytes(cut.read_bytes()[:100_000])  # a cut-off download
    uri = sqlite_uri(tmp_path)
    proc = run_job(["data=fashion_mnist", f"data.root={root}", "model.dim=16", "model.depth=2",
                    "trainer.epochs=1", f"tracking.uri={uri}"], tmp_path, check=False)
    assert proc.returncode != 0
    assert str(cut) in proc.stderr and "truncated" in proc.stderr
    assert "Traceback" not in proc.stderr.split(str(cut))[-1][:200]
    assert not (tmp_path / "mlflow.db").exists()  # failed before a run was created


def test_corrupt_checkpoint_on_resume_is_named_and_kept(tmp_path):
    out = tmp_path / "job"
    out.mkdir()
    garbage = b"PK\x03\x04 this is not a checkpoint" * 10
    (out / "checkpoint.pt").write_bytes(garbage)
    uri = sqlite_uri(tmp_path)
    args = [*TINY, f"hydra.run.dir={out}", f"tracking.uri={uri}", "tracking.experiment=ckpt"]
    proc = run_job(args, tmp_path, check=False)
    assert proc.returncode != 0
    assert f"checkpoint {out / 'checkpoint.pt'} is unreadable" in proc.stderr
    assert "trainer.resume=false" in proc.stderr  # says what to do
    assert (out / "checkpoint.pt").read_bytes() == garbage  # evidence kept, not overwritten
    assert no_runs(uri, "ckpt")  # failed before a run was created

    # the documented way out: start from scratch (the bad file is then replaced)
    run_job([*args, "trainer.resume=false"], tmp_path)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1
    [run] = runs(uri, "ckpt")
    assert run.info.status == "FINISHED"


def test_checkpoint_of_another_config_is_refused(tmp_path):
    out = tmp_path / "job"
    run_job([*TINY, f"hydra.run.dir={out}", "tracking.enabled=false"], tmp_path)
    before = (out / "checkpoint.pt").read_bytes()
    proc = run_job([*TINY, "model.depth=3", f"hydra.run.dir={out}", "tracking.enabled=false"],
                   tmp_path, check=False)
    assert proc.returncode != 0
    assert "was written by a different configuration" in proc.stderr
    assert (out / "checkpoint.pt").read_bytes() == before


def test_cache_from_another_dataset_version_is_rebuilt(tmp_path):
    """The cache key covers the dataset files (path, size, mtime) and the reader version: a
    cache written for other files is detected, never trusted, and rebuilt."""
    root = tmp_path / "fmnist"
    shutil.copytree(FASHION, root)
    common = ["data=fashion_mnist", f"data.root={root}", "data.max_train=512",
              "data.max_test=256", "model.dim=16", "model.depth=2", "trainer.epochs=1",
              "trainer.progress=lines", "tracking.enabled=false"]
    run_job([*common, f"hydra.run.dir={tmp_path / 'a'}"], tmp_path)
    cache_files = sorted((tmp_path / ".cache").glob("fashion_mnist-*.pt"))
    assert len(cache_files) == 2
    good = {p: torch.load(p, weights_only=True) for p in cache_files}

    # another dataset version: the same file names with other content (here: every test
    # label shifted by one), so the files' size/mtime differ
    labels = root / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(labels.read_bytes()))
    raw[8:] = bytes((b + 1) % 10 for b in raw[8:])
    labels.write_bytes(gzip.compress(bytes(raw)))
    proc = run_job([*common, f"hydra.run.dir={tmp_path / 'b'}"], tmp_path)
    log = proc.stdout + proc.stderr  # Hydra's console log is on stdout
    assert "is stale" in log and "rebuilding it from source" in log
    test_file = next(p for p in cache_files if p.name.endswith("-test.pt"))
    rebuilt = torch.load(test_file, weights_only=True)
    assert rebuilt["key"] != good[test_file]["key"]
    assert torch.equal(rebuilt["y"], (good[test_file]["y"] + 1) % 10)

    # a cache file that is some other dataset entirely (copied over by hand): also rebuilt
    shutil.copy(test_file, tmp_path / "saved.pt")
    torch.save({"key": "digits-v0", "x": torch.zeros(3, 1, 8, 8, dtype=torch.uint8),
                "y": torch.zeros(3, dtype=torch.int64), "classes": ["0"]}, test_file)
    proc = run_job([*common, f"hydra.run.dir={tmp_path / 'c'}"], tmp_path)
    assert "rebuilding it from source" in proc.stdout + proc.stderr
    assert torch.equal(torch.load(test_file, weights_only=True)["y"], rebuilt["y"])
