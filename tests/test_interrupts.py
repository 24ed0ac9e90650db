"""Ctrl-C and SIGTERM wait for a running tracking call (tracking/interrupts.py): raised inside
SQLAlchemy right after MLflow wrote a row, they left SQLite's write lock held while the job
closed its run, and every closing call waited out the 20 s busy timeout, retry after retry."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading

import pytest

from sweep.termination import JobTerminated, sigterm_raises
from tracking.client import holds_interrupts, open_client
from tracking.interrupts import held, raise_when_safe
from tracking.retry import with_retries


class Stop(KeyboardInterrupt):
    pass


def test_an_interrupt_inside_a_call_is_raised_when_it_ends():
    ran = []
    with pytest.raises(Stop), held():
        raise_when_safe(Stop("first"))
        raise_when_safe(Stop("second"))  # the first one is raised
        ran.append("rest of the call")
    assert ran == ["rest of the call"]
    with pytest.raises(Stop, match="now"):  # outside a call: at once
        raise_when_safe(Stop("now"))


def test_nested_calls_raise_at_the_outermost_end_and_replace_the_calls_error():
    with pytest.raises(Stop) as caught, held():
        with held():
            raise_when_safe(Stop())
        ran_on = True
        raise ValueError("the call's own error")
    assert ran_on and isinstance(caught.value.__context__, ValueError)
    with held():  # nothing pending is left behind
        pass


def test_another_thread_is_never_held():
    seen = []

    def worker():
        try:
            with held():
                raise_when_safe(Stop())
                seen.append("not held")
        except Stop:
            seen.append("raised at once")
    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == ["raised at once"]


def _locked(db) -> bool:
    """Whether another connection is refused SQLite's write lock."""
    con = sqlite3.connect(db, timeout=0.2)
    try:
        con.execute("BEGIN IMMEDIATE")
        con.rollback()
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        con.close()


@pytest.mark.parametrize("sig,raised", [(signal.SIGTERM, JobTerminated),
                                        (signal.SIGINT, KeyboardInterrupt)],
                         ids=["SIGTERM", "SIGINT"])
def test_a_signal_right_after_a_row_is_written_waits_for_the_commit(tmp_path, monkeypatch,
                                                                   sig, raised):
    from mlflow.entities import Metric

    db = tmp_path / "mlflow.db"
    client = open_client(f"sqlite:///{db}", retries=0, backoff_s=0.1)
    run_id = client.call("create", lambda c: c.create_run(
        client.experiment_id("interrupts")).info.run_id)
    dialect = client._raw._tracking_client.store.engine.dialect
    fired = []

    def signalling(execute):
        def run(cursor, statement, *args):
            execute(cursor, statement, *args)
            # the row is written and the write lock held until the commit: the signal's
            # handler runs here, in the DB-API call, as when the signal came during it
            if statement.lstrip().upper().startswith("INSERT") and not fired:
                fired.append(statement)
                os.kill(os.getpid(), sig)
        return run
    monkeypatch.setattr(dialect, "do_execute", signalling(dialect.do_execute))
    monkeypatch.setattr(dialect, "do_executemany", signalling(dialect.do_executemany))
    with sigterm_raises(), pytest.raises(raised) as caught:
        client.call("log metrics", lambda c: c.log_batch(run_id, metrics=[
            Metric("loss", 1.5, 0, 1), Metric("acc", 0.5, 0, 1)]))
    monkeypatch.undo()
    assert fired
    # checked while the exception (its traceback, the frames it holds) is alive, as when a job
    # closes its run: raised inside SQLAlchemy, it kept the write lock held until collected
    assert caught.value.__traceback__ is not None and not _locked(db)
    # the call completed before the interrupt was raised, and the run can be closed at once
    # (retries=0: a held lock would fail this call after SQLite's 20 s busy timeout)
    assert [m.value for m in client.get_metric_history(run_id, "acc")] == [0.5]
    client.set_terminated(run_id, "KILLED")
    assert client.get_run(run_id).info.status == "KILLED"


def test_an_interrupt_during_the_back_off_is_raised_at_once():
    attempts = []

    def flaky():
        attempts.append(1)
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
        raise ConnectionError("server restarting")

    with sigterm_raises(), pytest.raises(JobTerminated):
        with_retries(flaky, "log metrics", retries=3, backoff_s=30.0, hold_interrupts=True)
    assert attempts == [1]  # stopped in the first 30 s wait, not after it


def test_only_a_database_call_holds_interrupts():
    """A server's request can hang up to MLflow's 120 s timeout and holds no lock here."""
    assert holds_interrupts("sqlite:////tmp/mlflow.db")
    assert holds_interrupts("postgresql://db.example/mlflow")
    assert holds_interrupts("postgresql+psycopg2://db.example/mlflow")
    assert not holds_interrupts("http://127.0.0.1:5000")
    assert not holds_interrupts("HTTPS://mlflow.example")
    assert not holds_interrupts("databricks")
