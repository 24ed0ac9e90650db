"""Tracking settings that cannot work fail fast (issue 13, item 4): an unknown URI scheme, a
malformed URI, a store that cannot be written, or (at a sweep's driver, before any job) a server
that refuses connections end the command within seconds with one line naming the value and
what is valid; nothing is trained or launched. A request the store refuses is not retried.
Artifacts of a SQLite store go beside the database, not into ./mlruns of the launch folder."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from jobs import TINY, run_job, runs
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    ENDPOINT_NOT_FOUND,
    INTERNAL_ERROR,
    RESOURCE_ALREADY_EXISTS,
    TEMPORARILY_UNAVAILABLE,
)
from mlflow.tracking import MlflowClient
from services import free_port

from tracking.retry import TrackingRefused, is_permanent, with_retries
from tracking.uri import TrackingConfigError, check_server_reachable, check_tracking_uri

# Each failing command runs with a first retry wait of a minute, so one retry of a call shows
# as a minute; without any, it ends in ~4 s on an idle machine (Python, torch, Hydra), and the
# bound leaves room for 2 cores shared with other tests. Before, these cases took 80 s (a single
# job: 7 attempts with the default 1 s first wait) to many minutes (a sweep: the driver's
# attempts, then every job's).
RETRY_WAIT = "tracking.retry_backoff_s=60"
FAIL_FAST_S = 45


def a_file_in(tmp_path: Path) -> Path:
    afile = tmp_path / "afile"
    afile.write_text("a file, not a folder")
    return afile


def timed_job(args: list[str], cwd: Path) -> tuple[float, str, int]:
    """Run a command that should fail fast: (seconds it took, its stdout + stderr, status)."""
    tic = time.perf_counter()
    proc = run_job([*args, RETRY_WAIT], cwd, check=False, timeout=120)
    return time.perf_counter() - tic, proc.stdout + proc.stderr, proc.returncode


def lines_with(text: str, needle: str) -> list[str]:
    return [line for line in text.splitlines() if needle in line]


def metrics_files(root: Path) -> list[Path]:
    return list(root.rglob("metrics.jsonl"))


BAD_URIS = {
    "unknown scheme": ("foo://x", "unknown scheme 'foo'"),
    "no host": ("http://", "has no host"),
    "port not a number": ("http://127.0.0.1:notaport", "'notaport' is not a number"),
    "sqlite two slashes": ("sqlite://mlflow.db", "three slashes"),
}


@pytest.mark.parametrize("case", sorted(BAD_URIS))
def test_a_job_with_a_tracking_uri_that_cannot_work_fails_at_once_naming_it(tmp_path, case):
    uri, why = BAD_URIS[case]
    out = tmp_path / "job"
    elapsed, text, rc = timed_job([*TINY, f"tracking.uri={uri}", f"hydra.run.dir={out}"],
                                  tmp_path)
    assert rc != 0
    assert elapsed < FAIL_FAST_S, f"took {elapsed:.1f} s:\n{text[-3000:]}"
    [line] = lines_with(text, f"tracking.uri={uri!r}")  # one line, naming the value
    assert why in line and "valid: sqlite:///" in line and "http(s)://" in line, line
    assert "Traceback" not in text and "retrying" not in text, text[-3000:]
    assert not metrics_files(tmp_path)  # nothing trained


def test_a_job_whose_sqlite_folder_cannot_be_created_fails_at_once(tmp_path):
    db = a_file_in(tmp_path) / "mlflow.db"  # its folder would have to be a file's child
    uri = f"sqlite:///{db}"
    elapsed, text, rc = timed_job([*TINY, f"tracking.uri={uri}",
                                   f"hydra.run.dir={tmp_path / 'job'}"], tmp_path)
    assert rc != 0
    assert elapsed < FAIL_FAST_S, f"took {elapsed:.1f} s:\n{text[-3000:]}"
    [line] = lines_with(text, f"tracking.uri={uri!r}")
    assert f"{tmp_path / 'afile'} is a file" in line and "valid:" in line, line
    assert "Traceback" not in text and "retrying" not in text, text[-3000:]
    assert not metrics_files(tmp_path)


def test_a_sweep_with_an_unwritable_store_is_refused_before_any_job(tmp_path):
    uri = f"sqlite:///{a_file_in(tmp_path) / 'mlflow.db'}"
    sweep_dir = tmp_path / "sweep"
    elapsed, text, rc = timed_job(["-m", *TINY, "seed=0,1", f"tracking.uri={uri}",
                                   f"hydra.sweep.dir={sweep_dir}"], tmp_path)
    assert rc != 0
    assert elapsed < FAIL_FAST_S, f"took {elapsed:.1f} s:\n{text[-3000:]}"
    [line] = lines_with(text, f"tracking.uri={uri!r}")  # once, though both jobs have it
    assert "is a file" in line, line
    assert "no job was launched" in text
    assert "Traceback" not in text and "retrying" not in text, text[-3000:]
    assert not (sweep_dir / "0").exists() and not metrics_files(tmp_path)


def test_a_sweep_whose_server_refuses_connections_stops_before_any_job(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    sweep_dir = tmp_path / "sweep"
    elapsed, text, rc = timed_job(["-m", *TINY, "seed=0,1", f"tracking.uri={uri}",
                                   f"hydra.sweep.dir={sweep_dir}"], tmp_path)
    assert rc != 0
    assert elapsed < FAIL_FAST_S, f"took {elapsed:.1f} s:\n{text[-3000:]}"
    [line] = lines_with(text, uri)
    assert "not reachable (connection refused)" in line and "slurm/mlflow_server.sh" in line
    assert "Traceback" not in text and "retrying" not in text and "Warning" not in text, text
    assert not (sweep_dir / "0").exists() and not metrics_files(tmp_path)


class NotMlflow(http.server.BaseHTTPRequestHandler):
    """Some other web server: a 404 page for every path."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(b"<html><body>Not Found</body></html>\n")

    do_POST = do_GET  # noqa: N815

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def not_mlflow() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), NotMlflow)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_server_that_is_not_mlflow_is_not_retried(tmp_path, not_mlflow):
    """It answers (so neither the URI check nor the reachability probe stops it), but refuses
    every request: the job fails at its first tracking call instead of retrying for a minute."""
    elapsed, text, rc = timed_job([*TINY, f"tracking.uri={not_mlflow}",
                                   f"hydra.run.dir={tmp_path / 'job'}"], tmp_path)
    assert rc != 0
    assert elapsed < FAIL_FAST_S, f"took {elapsed:.1f} s:\n{text[-3000:]}"
    [line] = lines_with(text, "not retried")
    assert f"to {not_mlflow} failed" in line and "404" in line, line
    assert "retrying" not in text and not metrics_files(tmp_path)


def test_a_sweep_on_a_server_that_is_not_mlflow_stops_before_any_job(tmp_path, not_mlflow):
    sweep_dir = tmp_path / "sweep"
    elapsed, text, rc = timed_job(["-m", *TINY, "seed=0,1", f"tracking.uri={not_mlflow}",
                                   f"hydra.sweep.dir={sweep_dir}"], tmp_path)
    assert rc != 0
    assert elapsed < FAIL_FAST_S, f"took {elapsed:.1f} s:\n{text[-3000:]}"
    [line] = lines_with(text, "not retried")
    assert line.startswith("the sweep was not started") and not_mlflow in line, line
    assert "Traceback" not in text and "retrying" not in text, text[-3000:]
    assert not (sweep_dir / "0").exists() and not metrics_files(tmp_path)


def artifact_dir(uri: str, run_id: str) -> Path:
    return Path(unquote(urlparse(MlflowClient(uri).get_run(run_id).info.artifact_uri).path))


def test_sqlite_artifacts_go_beside_the_database_not_into_the_launch_folder(tmp_path):
    """A sweep (the driver creates the experiment, the job logs the artifacts) launched in one
    folder, logging to a database in another."""
    launch, store = tmp_path / "launch", tmp_path / "store"
    launch.mkdir()
    uri = f"sqlite:///{store / 'mlflow.db'}"
    run_job(["-m", *TINY, "seed=0", f"tracking.uri={uri}", "tracking.experiment=beside",
             "tracking.log_checkpoint=true", f"hydra.sweep.dir={tmp_path / 'sweep'}"], launch)
    exp = MlflowClient(uri).get_experiment_by_name("beside")
    assert exp.artifact_location == str(store / "mlartifacts" / "beside")
    [job] = [r for r in runs(uri, "beside") if r.data.tags.get("sweep") != "true"]
    assert (artifact_dir(uri, job.info.run_id) / "checkpoint" / "checkpoint.pt").is_file()
    assert artifact_dir(uri, job.info.run_id).is_relative_to(store / "mlartifacts" / "beside")
    assert not (launch / "mlruns").exists() and not (tmp_path / "mlruns").exists()


def test_an_artifact_location_setting_is_used(tmp_path):
    uri, where = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "elsewhere"
    run_job([*TINY, f"tracking.uri={uri}", "tracking.experiment=set",
             f"tracking.artifact_location={where}", f"hydra.run.dir={tmp_path / 'job'}"],
            tmp_path)
    [run] = runs(uri, "set")
    assert artifact_dir(uri, run.info.run_id).is_relative_to(where)
    assert (artifact_dir(uri, run.info.run_id) / "checkpoint" / "checkpoint.pt").is_file()
    assert not (tmp_path / "mlartifacts").exists() and not (tmp_path / "mlruns").exists()


# --- the classification itself, on the errors MLflow raises


def test_errors_a_retry_can_fix_are_told_from_those_it_cannot():
    assert is_permanent(MlflowException("404 page", error_code=ENDPOINT_NOT_FOUND))
    assert is_permanent(NotADirectoryError(20, "Not a directory"))
    assert is_permanent(ModuleNotFoundError("No module named 'psycopg2'"))
    # a locked SQLite file, a connection that failed, a concurrent experiment creation
    assert not is_permanent(MlflowException("database is locked",
                                            error_code=TEMPORARILY_UNAVAILABLE))
    assert not is_permanent(MlflowException("API request failed with exception "
                                            "ConnectionRefusedError", error_code=INTERNAL_ERROR))
    assert not is_permanent(MlflowException("exists", error_code=RESOURCE_ALREADY_EXISTS))
    assert not is_permanent(ConnectionRefusedError(111, "Connection refused"))


def test_a_permanent_error_is_raised_at_once_and_a_transient_one_retried():
    calls = []

    def refused() -> None:
        calls.append(1)
        raise MlflowException("Not Found\n<html>...", error_code=ENDPOINT_NOT_FOUND)

    with pytest.raises(TrackingRefused) as err:
        with_retries(refused, "experiment", retries=5, backoff_s=10.0, where="http://h:1")
    assert len(calls) == 1
    assert "\n" not in str(err.value) and "to http://h:1 failed" in str(err.value)

    attempts = iter([MlflowException("locked", error_code=TEMPORARILY_UNAVAILABLE), None])

    def locked_once() -> str:
        failure = next(attempts)
        if failure is not None:
            raise failure
        return "ok"

    assert with_retries(locked_once, "log metrics", retries=2, backoff_s=0.01) == "ok"


def test_the_reachability_probe_of_a_refused_port_takes_no_time():
    uri = f"http://127.0.0.1:{free_port()}"
    tic = time.perf_counter()
    with pytest.raises(TrackingConfigError, match="not reachable .connection refused."):
        check_server_reachable(uri)
    assert time.perf_counter() - tic < 2.0
    check_server_reachable("sqlite:///mlflow.db")  # not a server: nothing to probe


def test_the_error_shows_no_password():
    with pytest.raises(TrackingConfigError) as err:
        check_tracking_uri("http://alice:s3cret@host:notaport")
    assert "s3cret" not in str(err.value) and "alice:***@host" in str(err.value)
