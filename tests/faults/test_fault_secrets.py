"""No secret in any record (issue 13, item 3): a ``user:password@`` in ``tracking.uri`` or in an
Optuna storage URL reaches no tag, param, note, config artifact, ``optimization_results.yaml``,
``trials.csv``, file of the output or sweep dir, log or console line, or command line the
platform creates; and the files of run data the platform creates are its owner's only.

Real processes against a real MLflow server on 127.0.0.1, reached through a proxy that refuses
every request without the right HTTP basic-auth login: a run only gets logged if the password
reached the process that logs it (the driver, an in-process job, a submitit job), though no
record holds it. The password is drawn afresh by each run of the tests, so no file of the
repository or the cache can hold it by accident.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import os
import secrets
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from jobs import RUN, TINY, run_job
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient
from services import mlflow_server

from tracking.secrets import (
    CREDENTIALS_ENV,
    MLFLOW_PASSWORD_ENV,
    MLFLOW_USERNAME_ENV,
    create_private,
    credentialed,
    redact,
    split_credentials,
    strip_argv,
)

ROOT = Path(__file__).resolve().parents[2]
DRIVER = ROOT / "slurm" / "sweep_driver.sbatch"
SECRET = "S3cr3t-Pw-" + secrets.token_hex(6)
USER = "alice"
AUTH = "Basic " + base64.b64encode(f"{USER}:{SECRET}".encode()).decode()
NEEDLES = (SECRET.encode(), AUTH.split()[1].encode())  # the password, the header that holds it
OPTUNA = ["-m", "hydra/sweeper=optuna", "hydra.sweeper.n_jobs=1",
          "hydra.sweeper.direction=maximize", "hydra.sweeper.sampler.seed=0",
          "trainer.lr=tag(log,interval(1e-3,1e-2))", *[a for a in TINY if "lr=" not in a],
          "tracking.log_checkpoint=true", "tracking.experiment=secrets"]
NO_CREDENTIALS = (CREDENTIALS_ENV, MLFLOW_USERNAME_ENV, MLFLOW_PASSWORD_ENV)


# ---- the redaction itself ------------------------------------------------------------------------

@pytest.mark.parametrize("url, clean, shown", [
    ("http://alice:pw@127.0.0.1:5000", "http://127.0.0.1:5000", "http://alice:***@127.0.0.1:5000"),
    ("postgresql://bob:p%40w/x@db:5432/optuna", "postgresql://db:5432/optuna",
     "postgresql://bob:***@db:5432/optuna"),
    ("https://u:p@ss@host/x", "https://host/x", "https://u:***@host/x"),  # a raw @ in it
    ("sqlite://u:p@//tmp/x.db", "sqlite:////tmp/x.db", "sqlite://u:***@//tmp/x.db"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ("sqlite:////tmp/a:b@c.db", "sqlite:////tmp/a:b@c.db", "sqlite:////tmp/a:b@c.db"),
    ("journal:///tmp/j.log", "journal:///tmp/j.log", "journal:///tmp/j.log"),
])
def test_split_and_redact(url: str, clean: str, shown: str) -> None:
    assert split_credentials(url)[0] == clean
    assert redact(f"at {url}, then") == f"at {shown}, then"


def test_credentials_go_to_the_environment_and_come_back_only_in_memory(monkeypatch) -> None:
    for name in NO_CREDENTIALS:
        monkeypatch.setenv(name, "")  # and restored (unset) after the test
    argv = strip_argv([f"tracking.uri='http://{USER}:{SECRET}@127.0.0.1:5000'",
                       f"hydra.sweeper.storage=postgresql://bob:{SECRET}x@db:5432/optuna",
                       "model=asym"])
    assert argv == ["tracking.uri='http://127.0.0.1:5000'",
                    "hydra.sweeper.storage=postgresql://db:5432/optuna", "model=asym"]
    assert (os.environ[MLFLOW_USERNAME_ENV], os.environ[MLFLOW_PASSWORD_ENV]) == (USER, SECRET)
    assert credentialed("postgresql://db:5432/optuna") == \
        f"postgresql://bob:{SECRET}x@db:5432/optuna"
    assert credentialed("http://127.0.0.1:5000") == "http://127.0.0.1:5000"  # basic auth: env
    assert credentialed("postgresql://other:5432/x") == "postgresql://other:5432/x"


def test_private_files_are_created_0600_and_existing_ones_kept(tmp_path) -> None:
    old = os.umask(0o022)
    try:
        assert create_private(tmp_path / "new")
        (tmp_path / "mine").write_text("x")
        assert not create_private(tmp_path / "mine")
    finally:
        os.umask(old)
    assert mode(tmp_path / "new") == 0o600
    assert (tmp_path / "mine").read_text() == "x"


def test_a_sqlite_store_the_platform_creates_is_private(tmp_path) -> None:
    from tracking.client import open_client

    db = tmp_path / "store" / "mlflow.db"
    client = open_client(f"sqlite:///{db}", retries=0)
    client.experiment_id("private")
    assert mode(db) == 0o600


# ---- end to end: a job, two Optuna sweeps, the sbatch driver -----------------------------------

@pytest.mark.slow
def test_no_password_in_any_record_of_a_job_or_a_sweep(tmp_path) -> None:
    """(a) one job, (b) an Optuna sweep in one process (journal storage), (c) an Optuna sweep
    through submitit_local with its study in a database URL that carries a password too; all
    logging to a server that needs the login."""
    server_dir, work = tmp_path / "server", tmp_path / "work"
    work.mkdir()
    with mlflow_server(server_dir) as upstream, auth_proxy(upstream) as proxy:
        uri = proxy.url.replace("://", f"://{USER}:{SECRET}@")
        env = {name: "" for name in NO_CREDENTIALS}  # nothing from the test's environment
        job = run_job([*TINY, f"tracking.uri={uri}", "tracking.experiment=secrets",
                       "tracking.log_checkpoint=true", f"hydra.run.dir={work / 'job'}"],
                      cwd=work, env=env)
        sweep = run_job([*OPTUNA, "hydra.sweeper.n_trials=2", f"tracking.uri={uri}",
                         f"hydra.sweep.dir={work / 'sweep'}", "sweep_name=sweep"],
                        cwd=work, env=env, timeout=600)
        storage = f"sqlite://bob:{SECRET}@/{work / 'optuna.db'}"  # SQLite ignores the login
        driver, outputs, cmdlines = watch_command_lines(
            [sys.executable, RUN, *OPTUNA, "hydra.sweeper.n_trials=1", f"tracking.uri={uri}",
             f"hydra.sweeper.storage={storage}", "hydra/launcher=submitit_local",
             "hydra.launcher.timeout_min=10", f"hydra.sweep.dir={work / 'submitit'}",
             "sweep_name=submitit"], cwd=work, env=env)
        assert driver.returncode == 0, outputs
        client = MlflowClient(upstream)
        records = all_records(client)
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                  run_view_type=ViewType.ALL, max_results=100)
    assert proxy.authorized > 0 and not proxy.refused, proxy.refused  # all had the login

    # not vacuous: the job, 2 + 1 trials and 2 parents were logged, with metrics and artifacts
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    parents = [r for r in runs if r.data.tags.get("sweep") == "true"]
    assert len(runs) == 6 and len(children) == 3 and len(parents) == 2, records
    parent_ids = {r.info.run_id for r in parents}
    assert all(r.info.status == "FINISHED" and "test_acc" in r.data.metrics for r in runs
               if r.info.run_id not in parent_ids)
    assert (work / "job" / ".hydra" / "overrides.yaml").exists()
    assert (work / "sweep" / "optimization_results.yaml").exists()
    assert (work / "submitit" / ".submitit").is_dir()
    assert any((server_dir / "artifacts").rglob("checkpoint.pt"))
    assert any((server_dir / "artifacts").rglob("overrides.yaml"))  # the config artifact

    leaks = [p for root in (work, server_dir) for p in files_holding(root, NEEDLES)]
    assert not leaks, leaks
    output = job.stdout + job.stderr + sweep.stdout + sweep.stderr + outputs
    assert SECRET not in output and SECRET not in records
    assert not cmdlines, cmdlines

    for private in (work / "sweep" / ".mlflow_parent_run.json",
                    work / "sweep" / "optuna_journal.log",
                    work / "submitit" / ".mlflow_parent_run.json", work / "optuna.db"):
        assert mode(private) == 0o600, private


def test_sweep_driver_sbatch_keeps_the_password_off_every_command_line(tmp_path) -> None:
    """slurm/sweep_driver.sbatch, run by bash as SLURM would run it, with a stand-in `python`
    that records its arguments, its environment and its parent's (the script's) command line."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "activate").write_text(f'PATH="{venv / "bin"}:$PATH"\n')
    python = venv / "bin" / "python"
    python.write_text(f"""#!/bin/bash
if [[ "$1" == -m && "$2" == tracking.secrets ]]; then exec {sys.executable} "$@"; fi
tr '\\0' ' ' < /proc/$PPID/cmdline > {tmp_path}/driver_cmdline
printf '%s\\n' "$@" > {tmp_path}/args
printf '%s' "${CREDENTIALS_ENV}" > {tmp_path}/credentials
printf '%s' "${MLFLOW_PASSWORD_ENV}" > {tmp_path}/password
""")
    python.chmod(0o755)
    uri = f"http://{USER}:{SECRET}@127.0.0.1:5000"
    storage = f"postgresql://bob:{SECRET}@db:5432/optuna"
    env = {**{k: v for k, v in os.environ.items() if k not in NO_CREDENTIALS},
           "MIXERLAB_VENV": str(venv), "MIXERLAB_ROOT": str(ROOT), "MIXERLAB_DRIVER_REQUEUE": "0"}
    proc = subprocess.run(["bash", str(DRIVER), "model=asym", f"tracking.uri={uri}",
                           f"hydra.sweeper.storage={storage}"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    args = (tmp_path / "args").read_text().splitlines()
    assert args == ["sweep/run.py", "-m", "model=asym", "tracking.uri=http://127.0.0.1:5000",
                    "hydra.sweeper.storage=postgresql://db:5432/optuna"]
    assert SECRET not in (tmp_path / "driver_cmdline").read_text()
    assert "tracking.uri=http://127.0.0.1:5000" in (tmp_path / "driver_cmdline").read_text()
    assert SECRET not in proc.stdout + proc.stderr
    assert (tmp_path / "password").read_text() == SECRET
    credentials = (tmp_path / "credentials").read_text().splitlines()
    assert sorted(credentials) == sorted([uri, f"postgresql://bob:{SECRET}@db:5432"])


# ---- helpers -------------------------------------------------------------------------------------

def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def files_holding(root: Path, needles: tuple[bytes, ...]) -> list[Path]:
    """Every regular file under ``root`` (hidden ones and binaries too) holding a needle."""
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()
            and any(n in p.read_bytes() for n in needles)]


def all_records(client: MlflowClient) -> str:
    """Every experiment's name and tags, every run's name, params, tags and artifact paths."""
    lines = []
    for exp in client.search_experiments(view_type=ViewType.ALL):
        lines.append(f"experiment {exp.name} {exp.tags} {exp.artifact_location}")
        for run in client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL,
                                      max_results=100):
            lines.append(f"run {run.info.run_name} {run.info.artifact_uri} {run.data.params} "
                         f"{run.data.tags} {sorted(run.data.metrics)}")
            stack = [None]
            while stack:
                for item in client.list_artifacts(run.info.run_id, stack.pop()):
                    lines.append(item.path)
                    if item.is_dir:
                        stack.append(item.path)
    return "\n".join(lines)


def watch_command_lines(cmd: list[str], cwd: Path, env: dict[str, str],
                        timeout: float = 600) -> tuple[subprocess.CompletedProcess, str, dict]:
    """Run ``cmd`` (the user's own command line, which holds the password) and meanwhile read
    every other process's command line: the ones holding the password."""
    full_env = {**os.environ, "MIXERLAB_CACHE": str(cwd / ".cache"), **env}
    proc = subprocess.Popen(cmd, cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)
    reader.start()
    leaks, deadline = {}, time.time() + timeout
    while proc.poll() is None and time.time() < deadline:
        for pid in (int(d) for d in os.listdir("/proc") if d.isdigit()):
            if pid in (proc.pid, os.getpid()):
                continue
            try:
                line = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if SECRET.encode() in line:
                leaks[pid] = line.replace(b"\0", b" ").decode(errors="replace")
        time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    reader.join(timeout=30)
    return proc, "".join(out), leaks


class _Proxy(http.server.ThreadingHTTPServer):
    daemon_threads = True
    upstream = ""
    authorized = 0
    refused: list[str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _AuthHandler(http.server.BaseHTTPRequestHandler):
    """Forwards a request to the MLflow server if it carries the login, else answers 401."""

    protocol_version = "HTTP/1.1"
    server: _Proxy

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while (size := int(self.rfile.readline().split(b";")[0], 16)) > 0:
                data += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
            return data
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else None

    def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for key, value in headers:
            if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _forward(self) -> None:
        body = self._body()
        # /health needs no login, as with MLflow's basic-auth app (the driver probes it)
        if self.headers.get("Authorization") != AUTH and self.path != "/health":
            self.server.refused.append(f"{self.command} {self.path}")
            self._answer(401, [("WWW-Authenticate", 'Basic realm="test"')], b"login needed")
            return
        self.server.authorized += 1
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("host", "authorization", "content-length",
                                        "transfer-encoding", "connection")}
        request = urllib.request.Request(self.server.upstream + self.path, data=body,
                                         headers=headers, method=self.command)
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                self._answer(answer.status, list(answer.headers.items()), answer.read())
        except urllib.error.HTTPError as err:
            self._answer(err.code, list(err.headers.items()), err.read())

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _forward


@contextlib.contextmanager
def auth_proxy(upstream: str) -> Iterator[_Proxy]:
    """A proxy on 127.0.0.1 in front of ``upstream`` that needs USER / SECRET (basic auth)."""
    proxy = _Proxy(("127.0.0.1", 0), _AuthHandler)
    proxy.upstream, proxy.refused = upstream, []
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.shutdown()
        proxy.server_close()


@pytest.mark.parametrize("multirun", [False, True])
def test_a_password_written_in_a_config_file_is_refused_before_hydra_copies_it(
        tmp_path, multirun: bool) -> None:
    """Hydra copies the composed config into the output dir (.hydra/, multirun.yaml) before any
    job code runs: a password in a config file is refused before that, in one line, redacted."""
    extra = tmp_path / "conf" / "tracking"
    extra.mkdir(parents=True)
    leaky = (ROOT / "conf" / "tracking" / "mlflow.yaml").read_text().replace(
        "uri: null", f"uri: http://{USER}:{SECRET}@127.0.0.1:9")
    assert SECRET in leaky  # the config really holds it
    (extra / "leaky.yaml").write_text(leaky)
    args = ["--config-dir", str(tmp_path / "conf"), "tracking=leaky", *TINY]
    proc = run_job(["-m", *args] if multirun else args, tmp_path, check=False, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "holds a password in a config file" in out and f"{USER}:***@" in out, out
    assert SECRET not in out and "Traceback" not in out, out
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "multirun").exists()
