"""No code runs from a loaded file (issue 13, item 1): a resumed job and make_figures load
checkpoints with torch.load(weights_only=True), and figure 4 rebuilds a model from its run's
logged params, never from a config file, reading a checkpoint only from the run's artifact or
an output dir that provably is the run's. Each payload below would create a marker file when
unpickled or instantiated; the marker must never appear."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import torch
from jobs import ROOT, TINY, run_job, sqlite_uri
from mlflow.tracking import MlflowClient

from analysis import load_runs
from analysis.fig_energy import RefusedCheckpoint, energy_traces, load_trained_model
from analysis.figure_result import Skipped
from tracking.run_store import RunStore
from training.checkpoint import CheckpointError, load_checkpoint

EXPERIMENT = "untrusted"
MAKE_FIGURES = str(ROOT / "analysis" / "make_figures.py")


class Payload:
    """Unpickled, it runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.system, (f"touch {self.marker}",)


def save_payload(path: Path, marker: Path) -> None:
    """A torch checkpoint in the trainer's layout whose model state dict is the payload."""
    torch.save({"model": Payload(marker), "optimizer": {}, "epoch": 1, "fingerprint": "x"},
               path)


@dataclass
class Sweep:
    workdir: Path
    uri: str
    runs: dict[str, str]  # model name (sym, asym) -> run id
    output_dirs: dict[str, Path]  # run id -> its job's output dir (the output_dir tag)

    def artifacts(self, run_id: str) -> Path:
        """The run's artifact folder (a SQLite store keeps artifacts on the local disk)."""
        uri = MlflowClient(self.uri).get_run(run_id).info.artifact_uri
        return Path(unquote(urlparse(uri).path))

    def artifact(self, run_id: str) -> Path:
        """The run's checkpoint artifact as a file."""
        return self.artifacts(run_id) / "checkpoint" / "checkpoint.pt"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    """A real sweep: SymMixer and AsymMixer(lam 0), 1 epoch on 300 8x8 digits, checkpoints
    logged as artifacts and kept in each job's output dir."""
    workdir = tmp_path_factory.mktemp("untrusted")
    uri = sqlite_uri(workdir)
    run_job(["-m", *TINY, "data.max_train=300", "+variant=sym,asym_lam0",
             f"sweep_name={EXPERIMENT}", f"tracking.experiment={EXPERIMENT}",
             f"tracking.uri={uri}", "tracking.log_checkpoint=true"], cwd=workdir)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    jobs = [r for r in client.search_runs([exp.experiment_id]) if "output_dir" in r.data.tags]
    assert sorted(r.data.tags["model"] for r in jobs) == ["asym", "sym"]
    return Sweep(workdir, uri, {r.data.tags["model"]: r.info.run_id for r in jobs},
                 {r.info.run_id: Path(r.data.tags["output_dir"]) for r in jobs})


@pytest.fixture
def sweep(built: Sweep, tmp_path: Path) -> Iterator[Sweep]:
    """The sweep, restored after the test: its output dirs, artifacts and output_dir tags."""
    dirs = [d for run_id, out_dir in built.output_dirs.items()
            for d in (out_dir, built.artifacts(run_id))]
    for i, folder in enumerate(dirs):
        shutil.copytree(folder, tmp_path / "saved" / str(i))
    yield built
    client = MlflowClient(built.uri)
    for run_id, out_dir in built.output_dirs.items():
        client.set_tag(run_id, "output_dir", str(out_dir))
    for i, folder in enumerate(dirs):
        shutil.rmtree(folder)
        shutil.copytree(tmp_path / "saved" / str(i), folder)


def run_row(sweep: Sweep, model: str):
    tables = load_runs(sweep.uri, EXPERIMENT, metrics=[])
    return tables, tables.runs.set_index("model", drop=False).loc[model]


def test_load_checkpoint_refuses_a_pickle_payload(tmp_path):
    path, marker = tmp_path / "checkpoint.pt", tmp_path / "PWNED"
    save_payload(path, marker)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert not marker.exists()
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and "posix.system" in msg
    assert "trainer.resume=false" in msg  # says what to do


def test_sound_runs_load_from_their_own_output_dirs_without_a_refusal(sweep, caplog):
    """The checks cost a healthy sweep nothing: each run's checkpoint comes from its own output
    dir (here without any artifact left to fall back on), nothing is refused."""
    for run_id in sweep.runs.values():
        sweep.artifact(run_id).unlink()
    tables = load_runs(sweep.uri, EXPERIMENT, metrics=[])
    with caplog.at_level(logging.WARNING, logger="analysis"):
        _, summary = energy_traces(tables)
    assert set(summary["run_name"]) == set(tables.runs["run_name"])
    # refusals are the analysis's warnings; a data-cache rebuild is not one
    assert not [r.getMessage() for r in caplog.records if r.name.startswith("analysis")]


def test_make_figures_refuses_payloads_in_output_dir_and_artifact(sweep, tmp_path):
    """sym: a payload where its output_dir tag points (its artifact gone, so that file would be
    used); asym: a payload uploaded as its checkpoint artifact (its output dir's checkpoint
    gone). Both refused in one line each, the payloads never run, the other figures drawn."""
    sym, asym = sweep.runs["sym"], sweep.runs["asym"]
    local_marker, artifact_marker = tmp_path / "PWNED_local", tmp_path / "PWNED_artifact"
    local = sweep.output_dirs[sym] / "checkpoint.pt"
    save_payload(local, local_marker)
    sweep.artifact(sym).unlink()
    payload = tmp_path / "upload" / "checkpoint.pt"
    payload.parent.mkdir()
    save_payload(payload, artifact_marker)
    MlflowClient(sweep.uri).log_artifact(asym, str(payload), "checkpoint")
    assert sweep.artifact(asym).read_bytes() == payload.read_bytes()
    (sweep.output_dirs[asym] / "checkpoint.pt").unlink()

    proc = subprocess.run([sys.executable, MAKE_FIGURES, "--tracking-uri", sweep.uri,
                           "--experiment", EXPERIMENT, "--out", str(tmp_path / "figs"),
                           "--no-log"], cwd=sweep.workdir, capture_output=True, text=True,
                          timeout=300)
    log = proc.stdout + proc.stderr
    assert not local_marker.exists() and not artifact_marker.exists(), log
    assert proc.returncode == 0, log  # a partial figure set
    assert "drew    fig1_accuracy" in log and "skipped fig4_energy" in log, log
    lines = log.splitlines()
    [sym_line] = [ln for ln in lines if "refused" in ln and sym in ln]
    assert str(local) in sym_line and "posix.system" in sym_line, sym_line
    [asym_line] = [ln for ln in lines if "refused" in ln and asym in ln]
    assert "artifact checkpoint/checkpoint.pt" in asym_line and "posix.system" in asym_line
    assert "Traceback" not in log


def test_output_dir_of_another_run_is_refused(sweep, tmp_path, caplog):
    """A tag alone is not proof: sym's output_dir tag pointing at asym's dir (whose
    mlflow_run_id file names asym) is refused, even though the files there are sound."""
    sym, asym = sweep.runs["sym"], sweep.runs["asym"]
    MlflowClient(sweep.uri).set_tag(sym, "output_dir", str(sweep.output_dirs[asym]))
    sweep.artifact(sym).unlink()
    tables, row = run_row(sweep, "sym")
    with pytest.raises(RefusedCheckpoint, match=f"names run '{asym}', not this run") as err:
        load_trained_model(RunStore(sweep.uri), row, tmp_path)
    assert sym in str(err.value) and str(sweep.output_dirs[asym]) in str(err.value)

    # in the figure: skipped for want of a SymMixer checkpoint, the refusal logged once
    with caplog.at_level(logging.WARNING, logger="analysis"):
        with pytest.raises(Skipped, match="no sym run with a loadable checkpoint"):
            energy_traces(tables)
    assert [r.getMessage() for r in caplog.records].count(str(err.value)) == 1

    # a checkpoint copied into the run's own dir from another run: its run_id gives it away
    shutil.copy(sweep.output_dirs[asym] / "checkpoint.pt",
                sweep.output_dirs[sym] / "checkpoint.pt")
    MlflowClient(sweep.uri).set_tag(sym, "output_dir", str(sweep.output_dirs[sym]))
    _, row = run_row(sweep, "sym")
    with pytest.raises(RefusedCheckpoint, match=f"written by run '{asym}', not this one"):
        load_trained_model(RunStore(sweep.uri), row, tmp_path)

    # another run's sound checkpoint uploaded as this run's artifact: its config fingerprint
    # (the run's config_fingerprint tag) gives it away
    MlflowClient(sweep.uri).log_artifact(sym, str(sweep.artifact(asym)), "checkpoint")
    assert "tags.config_fingerprint" in row
    with pytest.raises(RefusedCheckpoint, match="artifact checkpoint/checkpoint.pt: the "
                                                "checkpoint's config fingerprint"):
        load_trained_model(RunStore(sweep.uri), row, tmp_path)


def test_config_files_are_never_instantiated(sweep, tmp_path):
    """A planted Hydra config (output dir and config artifact) whose model _target_ writes a
    file (builtins.open passes Hydra's own target blocklist): the model comes from the run's
    params, so the config is never instantiated."""
    sym = sweep.runs["sym"]
    marker = tmp_path / "PWNED"
    planted = f"model:\n  _target_: builtins.open\n  _args_: ['{marker}', 'w']\n"
    (sweep.output_dirs[sym] / ".hydra" / "config.yaml").write_text(planted)
    artifact_cfg = sweep.artifact(sym).parents[1] / "config" / ".hydra" / "config.yaml"
    artifact_cfg.write_text(planted)
    _, row = run_row(sweep, "sym")
    try:
        model = load_trained_model(RunStore(sweep.uri), row, tmp_path)
    finally:
        assert not marker.exists(), "the planted config was instantiated"
    assert type(model).__name__ == "Mixer" and len(model.blocks) == 2
    # and without the output dir, from the artifacts
    row = row.copy()
    row["tags.output_dir"] = "/nonexistent"
    load_trained_model(RunStore(sweep.uri), row, tmp_path)
    assert not marker.exists()


def test_params_that_are_not_mixer_arguments_are_refused(sweep, tmp_path):
    _, row = run_row(sweep, "sym")
    row = row.copy()
    row["params.model._target_"] = "os.system"
    with pytest.raises(RefusedCheckpoint, match=r"model\._target_ is not an argument of "
                                                r"models\.Mixer \(valid: name, block"):
        load_trained_model(RunStore(sweep.uri), row, tmp_path)
