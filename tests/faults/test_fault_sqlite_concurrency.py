"""Eight jobs writing to one fresh SQLite tracking file at once (MLflow's embedded default):
concurrent schema creation, experiment creation and "database is locked" must not lose a run
or a metric."""

from __future__ import annotations

import os
import subprocess
import sys

from jobs import RUN, metric_history, runs, sqlite_uri

N = 8
KEYS = ("train_loss", "test_loss", "test_acc", "lr")


def test_eight_concurrent_jobs_on_one_new_sqlite_file(tmp_path):
    uri = sqlite_uri(tmp_path)  # no database yet: the jobs race to create it
    env = {**os.environ, "MIXERLAB_CACHE": str(tmp_path / ".cache")}
    procs = [subprocess.Popen(
        [sys.executable, RUN, "data=digits", "model.dim=16", "model.depth=2", "trainer.epochs=2",
         "trainer.threads=1", "trainer.progress=lines", f"seed={i}", f"run_name=job{i}",
         f"tracking.uri={uri}", "tracking.experiment=concurrent",
         f"hydra.run.dir={tmp_path / f'job{i}'}"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for i in range(N)]
    errors = []
    for i, p in enumerate(procs):
        _, err = p.communicate(timeout=400)
        if p.returncode != 0:
            errors.append(f"job{i} ({p.returncode}): {err[-2000:]}")
    assert not errors, "\n".join(errors)
    by_name = {r.info.run_name: r for r in runs(uri, "concurrent")}
    assert sorted(by_name) == [f"job{i}" for i in range(N)]  # 8 runs, no duplicates
    for name, run in by_name.items():
        assert run.info.status == "FINISHED", name
        assert run.data.params["seed"] == name[3:]
        for key in KEYS:
            assert [s for s, _ in metric_history(uri, run.info.run_id, key)] == [1, 2], (name, key)
        assert "final_test_acc" in run.data.metrics
