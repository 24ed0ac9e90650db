"""Errors a person can act on (issue 13, item 6), as a user meets them (`python sweep/run.py`):
each bad value one line naming the key, the value and what is valid, no traceback unless
HYDRA_FULL_ERROR=1 asks for it, exit status 2, nothing launched and nothing already saved lost;
a resume refused for a changed config names each change and the ways on; Ctrl-C ends with one
line saying how the run was closed and how to resume."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from jobs import RUN, SLOW_JOB, TINY, epochs_done, run_job, runs, sqlite_uri, wait_for

OFF = "tracking.enabled=false"


def assert_refused(proc: subprocess.CompletedProcess, *lines: str) -> None:
    """Exit status 2, each of ``lines`` a whole line of stderr, no traceback anywhere."""
    out = f"{proc.stdout}\n{proc.stderr}"
    assert proc.returncode == 2, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    for line in lines:
        assert any(got.strip().removeprefix("- ") == line for got in proc.stderr.splitlines()), \
            f"no line {line!r} in:\n{proc.stderr[-3000:]}"


def test_every_bad_value_is_one_line_naming_key_value_and_what_is_valid(tmp_path):
    job = tmp_path / "job"
    args = [*TINY, OFF, f"hydra.run.dir={job}", "seed=abc", "+trainer.lrr=0.1",
            "+model.dimm=8"]
    proc = run_job(args, tmp_path, check=False)
    assert_refused(proc, "seed='abc' is invalid; it must be an integer")
    lines = proc.stderr.splitlines()
    [lrr] = [line for line in lines if "trainer.lrr=0.1" in line]
    assert "is not a trainer setting; did you mean trainer.lr? valid: " in lrr
    assert "weight_decay" in lrr  # the valid keys are listed
    [dimm] = [line for line in lines if "model.dimm=8" in line]
    assert "is not a model setting; did you mean model.dim? valid: " in dimm
    assert not (job / "checkpoint.pt").exists()

    # the switch for a traceback, the one Hydra names under its own errors
    full = run_job(args, tmp_path, env={"HYDRA_FULL_ERROR": "1"}, check=False)
    assert full.returncode != 0
    assert "Traceback" in full.stderr and "seed='abc' is invalid" in full.stderr


def test_a_sweep_with_a_bad_value_launches_nothing_and_names_it(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_job(["-m", *TINY, OFF, "seed=0,abc", f"hydra.sweep.dir={sweep}"], tmp_path,
                   check=False)
    out = f"{proc.stdout}\n{proc.stderr}"
    assert proc.returncode != 0
    assert "Traceback" not in out
    assert "no job was launched" in proc.stderr
    assert "  - seed='abc' is invalid; it must be an integer" in proc.stderr.splitlines()
    assert not (sweep / "0").exists()  # not even the good job ran


def test_an_unwritable_run_dir_is_refused_before_anything_is_created(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("a file, not a folder")
    for run_dir in (afile / "run", Path("/proc/nope")):
        proc = run_job([*TINY, OFF, f"hydra.run.dir={run_dir}"], tmp_path, check=False)
        assert_refused(proc)
        [line] = [line for line in proc.stderr.splitlines() if line.startswith("hydra.run.dir")]
        assert line.startswith(f"hydra.run.dir={run_dir} cannot be created or written (")
        assert line.endswith("); choose a writable directory")
    assert afile.read_text() == "a file, not a folder"


def test_an_unwritable_sweep_dir_is_refused_before_any_job_or_mlflow_run(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("")
    uri = sqlite_uri(tmp_path)
    proc = run_job(["-m", *TINY, "seed=0,1", f"hydra.sweep.dir={afile / 'sweep'}",
                    f"tracking.uri={uri}"], tmp_path, check=False)
    assert_refused(proc)
    assert f"hydra.sweep.dir={afile / 'sweep'} cannot be created or written (" in proc.stderr
    assert not (tmp_path / "mlflow.db").exists()  # no parent run was opened


def test_a_resume_refused_for_a_changed_config_names_each_change_and_the_ways_on(tmp_path):
    job = tmp_path / "job"
    run_job([*TINY, OFF, f"hydra.run.dir={job}"], tmp_path)  # TINY: model.dim=16, 1 epoch
    before = (job / "checkpoint.pt").read_bytes()
    proc = run_job([*TINY, OFF, f"hydra.run.dir={job}", "model.dim=8", "trainer.epochs=2"],
                   tmp_path, check=False)
    assert_refused(proc)
    [line] = [line for line in proc.stderr.splitlines() if line.startswith("checkpoint ")]
    assert "was written by a different configuration" in line
    assert "model.dim: 16 -> 8" in line and "trainer.epochs: 1 -> 2" in line
    assert "trainer.lr" not in line  # only what changed
    assert "rerun with the old values to resume" in line and "trainer.resume=false" in line
    assert "hydra.run.dir" in line
    assert (job / "checkpoint.pt").read_bytes() == before  # nothing saved is lost


def test_ctrl_c_closes_the_run_as_killed_and_says_how_to_resume(tmp_path):
    job = tmp_path / "job"
    uri = sqlite_uri(tmp_path)
    args = [*SLOW_JOB, "trainer.epochs=20", f"hydra.run.dir={job}", f"tracking.uri={uri}",
            "tracking.experiment=ctrl-c", "run_name=ctrlc"]
    env = {**os.environ, "MIXERLAB_CACHE": str(tmp_path / ".cache")}
    proc = subprocess.Popen([sys.executable, RUN, *args], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for("the first epoch", lambda: epochs_done(job) >= 1, proc=proc)
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    out = f"{stdout}\n{stderr}"
    assert proc.returncode == 130, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    [run] = runs(uri, "ctrl-c")
    assert run.info.status == "KILLED"
    last = stderr.strip().splitlines()[-1]
    done = re.fullmatch(
        rf"interrupted: MLflow run ctrlc \({run.info.run_id}\) closed as KILLED after epoch "
        rf"(\d+) of 20; run the same command to resume at epoch (\d+) "
        rf"\(checkpoint\.pt in {re.escape(str(job))}\)", last)
    assert done, last
    assert int(done[2]) == int(done[1]) + 1 == epochs_done(job) + 1


def test_the_interrupted_line_without_tracking_names_the_checkpoint(tmp_path):
    from sweep.termination import interrupted_line

    line = interrupted_line(KeyboardInterrupt(), run_name="sym-d2-w16-s0", run_id=None,
                            closed=True, tracking=False, epoch=3, epochs=10, out_dir=tmp_path,
                            resumable=True, in_sweep=False)
    assert line == ("interrupted: job sym-d2-w16-s0 stopped (tracking.enabled=false: nothing "
                    "was logged to MLflow) after epoch 3 of 10; run the same command to resume "
                    f"at epoch 4 (checkpoint.pt in {tmp_path})")
