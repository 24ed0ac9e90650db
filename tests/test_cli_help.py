"""`python sweep/run.py --help`: the app's own help, from conf/ itself, without a job's imports
(its time is measured by benchmarks/cli_help.py, not here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "sweep" / "run.py"


def help_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args, str(RUN), "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_help_names_every_experiment_model_and_three_examples():
    done = help_run()
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "Mixer Symmetry Lab" in text and "is powered by Hydra" not in text  # the app's help
    groups = {line.split(":", 1)[0]: line.split(":", 1)[1] for line in text.splitlines()
              if ":" in line and not line.startswith(" ")}
    for group in ("experiment", "model", "data", "trainer", "tracking"):
        options = {o.strip() for o in groups[group].split(",")}
        assert options == {p.stem for p in (ROOT / "conf" / group).glob("*.yaml")}, group
    examples = text.split("== Examples ==")[1].split("==")[0]
    assert examples.count("python sweep/run.py") == 3
    assert "--cfg job" in text and "--hydra-help" in text


def test_help_imports_no_job_machinery():
    """torch, MLflow, Optuna and the project's model/data/training packages stay unimported."""
    done = help_run("-X", "importtime")
    assert done.returncode == 0, done.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:")}
    heavy = imported & {"torch", "mlflow", "optuna", "submitit", "models", "data", "training"}
    assert not heavy, heavy
