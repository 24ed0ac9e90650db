"""Real services for tests: an MLflow tracking server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 90.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


@contextlib.contextmanager
def mlflow_server(workdir: Path, port: int | None = None,
                  backend_uri: str | None = None) -> Iterator[str]:
    """`mlflow server` over a SQLite store in ``workdir``; yields http://127.0.0.1:PORT and
    stops the server on exit."""
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    backend = backend_uri or f"sqlite:///{workdir / 'server.db'}"
    log = open(workdir / f"mlflow-server-{port}.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend,
         "--artifacts-destination", str(workdir / "artifacts"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "2"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        # MLflow 3.17 starts background job workers (GenAI features) unless told not to:
        # half a minute of start-up the tests do not need
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
