"""Shared fixtures: one small real sweep logged to MLflow (SQLite), used by the analysis and the
MLflow UI tests."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from jobs import ROOT, TINY, run_job, sqlite_uri
from mlflow.tracking import MlflowClient

SWEEP_NAME = "analysis_fixture"
EXPERIMENT = "analysis_test"
# the variants of figures 1-4: vanilla, SymMixer and AsymMixer at lam 0 and two lam > 0
VARIANTS = "vanilla,sym,asym_lam0,asym_lam1e-2,asym_lam1"
SEEDS = "0,1"


@dataclass
class SweepStore:
    """Where the fixture sweep lives."""

    workdir: Path
    uri: str
    experiment: str
    experiment_id: str
    sweep_name: str
    parent_run_id: str
    child_run_ids: list[str]
    seconds: float


@pytest.fixture(scope="session", autouse=True)
def _own_data_cache(tmp_path_factory: pytest.TempPathFactory):
    """Point the decoded-data cache of this test process (and every job it starts without its
    own MIXERLAB_CACHE) at a fresh folder: a ~/.cache left by another checkout or venv holds
    files whose key names other source files, and their "stale, rebuilding" warnings would
    reach tests that assert on logged records."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MIXERLAB_CACHE", str(tmp_path_factory.mktemp("data-cache")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def analysis_sweep(tmp_path_factory: pytest.TempPathFactory) -> SweepStore:
    """`sweep/run.py -m` over 5 variants x 2 seeds on 8x8 digits (C 16, depth 2, 2 epochs, 300
    training images), checkpoints logged: 10 real jobs nested under one parent run."""
    workdir = tmp_path_factory.mktemp("analysis_sweep")
    uri = sqlite_uri(workdir)
    args = [a for a in TINY if not a.startswith("trainer.epochs")]
    t0 = time.perf_counter()
    run_job(["-m", *args, "trainer.epochs=2", "data.max_train=300", f"+variant={VARIANTS}",
             f"seed={SEEDS}", f"sweep_name={SWEEP_NAME}", f"tracking.experiment={EXPERIMENT}",
             f"tracking.uri={uri}", "tracking.log_checkpoint=true"], cwd=workdir, timeout=600)
    seconds = time.perf_counter() - t0
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    parents = client.search_runs([exp.experiment_id], "tags.sweep = 'true'")
    assert len(parents) == 1, parents
    parent = parents[0].info.run_id
    children = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent}'",
                                  max_results=100)
    assert len(children) == 10 and all(r.info.status == "FINISHED" for r in children)
    return SweepStore(workdir, uri, EXPERIMENT, exp.experiment_id, SWEEP_NAME, parent,
                      [r.info.run_id for r in children], seconds)


@pytest.fixture(scope="session")
def figures(analysis_sweep: SweepStore, tmp_path_factory: pytest.TempPathFactory
            ) -> tuple[Path, subprocess.CompletedProcess]:
    """`analysis/make_figures.py` run once per session, as a user runs it, over the fixture
    sweep (tests/test_analysis.py and tests/test_report.py read its output)."""
    out = tmp_path_factory.mktemp("figures")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "analysis" / "make_figures.py"),
                           "--tracking-uri", analysis_sweep.uri, "--experiment",
                           analysis_sweep.experiment, "--out", str(out)],
                          cwd=analysis_sweep.workdir, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "refused" not in proc.stdout, proc.stdout  # a healthy sweep's checkpoints all load
    print(f"sweep {analysis_sweep.seconds:.1f} s, make_figures {time.perf_counter() - t0:.1f} s")
    return out, proc
