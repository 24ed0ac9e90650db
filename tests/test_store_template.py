"""A new SQLite store is a copy of a migrated template (tracking/store_template.py): the same
store MLflow would have built, built once, and never a reason for a job to fail."""

from __future__ import annotations

import logging
import sqlite3
import stat
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tracking.client import open_client
from tracking.store_template import TEMPLATE_DIR, template_path


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)  # MLflow's "Default" experiment lives in ./mlruns
    monkeypatch.setenv("MIXERLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def dump(db: Path) -> list[str]:
    """The store's schema and rows as SQL lines, sorted: MLflow's own migrations emit some
    constraints and indexes in a different order from one run to the next (so a table's
    lines are compared without their separating commas)."""
    con = sqlite3.connect(db)
    try:
        text = "\n".join(con.iterdump())
    finally:
        con.close()
    return sorted(line.strip().rstrip(",").strip() for line in text.splitlines())


def default_experiment(db: Path) -> tuple:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT name, artifact_location, lifecycle_stage, workspace "
                           "FROM experiments WHERE experiment_id = 0").fetchone()
    finally:
        con.close()


def without_default(lines: list[str]) -> list[str]:
    """Less the rows of experiments: "Default" carries its creation time."""
    return [ln for ln in lines if not ln.startswith('INSERT INTO "experiments" VALUES(')]


def test_a_new_store_is_the_store_mlflow_builds(cache, tmp_path):
    own, copied = tmp_path / "own.db", tmp_path / "copied.db"
    MlflowClient(f"sqlite:///{own}").search_experiments()  # MLflow's migrations, no template
    open_client(f"sqlite:///{copied}").search_experiments()
    assert template_path().parent == cache / TEMPLATE_DIR
    assert without_default(dump(copied)) == without_default(dump(own))
    # "Default" as MLflow creates it in this folder, not the template's scratch folder
    assert default_experiment(copied) == default_experiment(own)
    assert default_experiment(copied)[1] == str(tmp_path / "mlruns" / "0")
    assert stat.S_IMODE(copied.stat().st_mode) == 0o600  # tracking/secrets.py create_private


def test_the_template_is_built_once_and_stores_stay_apart(cache, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    first = open_client(f"sqlite:///{tmp_path / 'a.db'}")
    assert "Creating initial MLflow database tables" in caplog.text  # for the template
    template = template_path()
    built = template.stat().st_mtime_ns
    caplog.clear()
    second = open_client(f"sqlite:///{tmp_path / 'b.db'}")
    assert "Creating initial MLflow database tables" not in caplog.text  # no migration ran
    assert template.stat().st_mtime_ns == built
    first.experiment_id("only-in-a")
    assert [e.name for e in second.search_experiments()] == ["Default"]
    assert {e.name for e in first.search_experiments()} == {"Default", "only-in-a"}
    con = sqlite3.connect(template)  # the copies wrote nothing back
    assert con.execute("SELECT count(*) FROM experiments").fetchone()[0] == 0
    con.close()


def test_an_existing_store_is_never_overwritten(cache, tmp_path):
    db = tmp_path / "store.db"
    client = open_client(f"sqlite:///{db}")
    exp = client.experiment_id("kept")
    run = client.create_run(exp)
    client.log_metric(run.info.run_id, "acc", 0.5)
    again = open_client(f"sqlite:///{db}")
    assert again.get_metric_history(run.info.run_id, "acc")[0].value == 0.5


def test_a_corrupt_template_is_replaced_and_the_store_still_opens(cache, tmp_path, caplog):
    open_client(f"sqlite:///{tmp_path / 'a.db'}")
    template = template_path()
    template.write_bytes(b"not a database" * 100)
    client = open_client(f"sqlite:///{tmp_path / 'b.db'}")  # MLflow builds this one itself
    assert client.experiment_id("works") == "1"
    assert "could not copy the schema template" in caplog.text
    assert not template.exists()  # removed, so the next store rebuilds it
    open_client(f"sqlite:///{tmp_path / 'c.db'}")
    assert template.exists()
    assert without_default(dump(tmp_path / "c.db")) == without_default(dump(tmp_path / "b.db"))


def test_an_unusable_cache_falls_back_to_mlflow(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("MIXERLAB_CACHE", str(blocker))  # its mlflow-stores/ cannot be made
    client = open_client(f"sqlite:///{tmp_path / 'store.db'}")
    assert client.experiment_id("works") == "1"
    assert "could not copy the schema template" in caplog.text
