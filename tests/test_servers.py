"""What the platform's servers expose, checked on real processes: `slurm/mlflow_server.sh`
listens on 127.0.0.1 unless told otherwise (another address needs --allow-remote and draws a
no-authentication warning), keeps a database password out of every command line, printed line
and log line, creates its files for its owner only and stops without leftovers; `make mlflow-ui`
ends whole on SIGTERM or Ctrl-C; the local SLURM daemons listen where slurm/README.md says."""

from __future__ import annotations

import http.server
import os
import signal
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from services import free_port, wait_http

ROOT = Path(__file__).resolve().parents[1]
SERVER = str(ROOT / "slurm" / "mlflow_server.sh")
SECRET = "S3cret" + "Pw"   # split so that this test's own source line never matches a scan
LISTEN = "0A"              # TCP state in /proc/net/tcp*


# ---- /proc readers -------------------------------------------------------------------------------

def listening_addresses(port: int) -> set[str]:
    """Local addresses of the TCP sockets listening on ``port`` (IPv4 and IPv6)."""
    found = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        with open(table) as f:
            next(f)
            for line in f:
                local, state = line.split()[1], line.split()[3]
                addr_hex, port_hex = local.split(":")
                if state != LISTEN or int(port_hex, 16) != port:
                    continue
                # each 32-bit word is stored in host (little-endian) byte order
                raw = b"".join(bytes.fromhex(addr_hex[i:i + 8])[::-1]
                               for i in range(0, len(addr_hex), 8))
                found.add(socket.inet_ntop(family, raw))
    return found


def processes() -> dict[int, tuple[str, int, int]]:
    """pid -> (state, ppid, process group) of every process."""
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                text = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            fields = text.rsplit(")", 1)[1].split()
            out[int(d)] = (fields[0], int(fields[1]), int(fields[2]))
    return out


def descendants(pid: int) -> set[int]:
    """``pid`` and every process below it."""
    procs, tree = processes(), {pid}
    grew = True
    while grew:
        below = {p for p, (_, ppid, _) in procs.items() if ppid in tree} - tree
        tree |= below
        grew = bool(below)
    return tree


def live(pids: set[int]) -> set[int]:
    """Those of ``pids`` still running (zombies are gone in all but name)."""
    return {p for p, (state, _, _) in processes().items() if p in pids and state != "Z"}


def group_members(pgid: int) -> set[int]:
    return {p for p, (state, _, pg) in processes().items() if pg == pgid and state != "Z"}


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def wait_until(check, timeout: float) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return True
        time.sleep(0.25)
    return check()


def run_server_script(*args: str, env: dict[str, str] | None = None,
                      timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", SERVER, *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


# ---- bad flags and remote addresses: refused before anything starts ---------------------------

@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.7", "::"])
def test_non_loopback_host_needs_allow_remote(tmp_path, host):
    t0 = time.time()
    proc = run_server_script("--data-dir", str(tmp_path / "data"), "--host", host, timeout=30)
    assert proc.returncode == 2 and time.time() - t0 < 10
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"'{host}'" in lines[0] and "--allow-remote" in lines[0], lines
    assert "no authentication" in lines[0]
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("script, args, value", [
    ("mlflow_server.sh", ["--port", "99999"], "99999"),
    ("mlflow_server.sh", ["--workers", "0"], "'0'"),
    ("mlflow_server.sh", ["--bogus"], "--bogus"),
    ("mlflow_server.sh", ["--port"], "--port"),
    ("mlflow_ui.sh", ["--port", "http"], "http"),
    ("mlflow_ui.sh", ["--host", "0.0.0.0"], "--host"),
])
def test_bad_flags_are_one_line_and_exit_2(script, args, value):
    proc = subprocess.run(["bash", str(ROOT / "slurm" / script), *args], capture_output=True,
                          text=True, timeout=30)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and value in lines[0], (proc.returncode, lines)


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def health_only_server() -> Iterator[int]:
    """Something answering /health on 127.0.0.1: the script then starts nothing itself."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1]
    srv.shutdown()


def test_allow_remote_warns_that_mlflow_has_no_authentication(tmp_path, health_only_server):
    port = health_only_server
    proc = run_server_script("--data-dir", str(tmp_path / "data"), "--host", "0.0.0.0",
                             "--allow-remote", "--port", str(port), timeout=30)
    assert proc.returncode == 0, proc.stderr
    warning = [ln for ln in proc.stderr.splitlines() if "WARNING" in ln]
    assert len(warning) == 1 and "0.0.0.0" in warning[0], proc.stderr
    assert "no authentication" in warning[0] and "--basic-auth" in warning[0]
    assert "tracking.uri=http://" in proc.stdout


# ---- a real server ----------------------------------------------------------------------------

@pytest.mark.slow
def test_default_server_is_loopback_only_private_and_stops_without_leftovers(tmp_path):
    data, port = tmp_path / "data", free_port()
    data.mkdir()
    (data / "server.log").write_text("from an older run\n")
    (data / "server.log").chmod(0o644)
    args = ["--data-dir", str(data), "--port", str(port), "--workers", "2"]
    proc = run_server_script(*args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"tracking.uri=http://127.0.0.1:{port}" in proc.stdout
    pgid = int((data / "server.pid").read_text())
    try:
        assert listening_addresses(port) == {"127.0.0.1"}
        # no background job workers (huey) among the server's processes
        assert not any("huey" in cmdline(p) for p in group_members(pgid))
        client = MlflowClient(f"http://127.0.0.1:{port}")
        run = client.create_run(client.create_experiment("private"))
        client.log_text(run.info.run_id, "x", "note.txt")   # uploaded through the server
        files = [data, *data.rglob("*")]
        assert {"note.txt", "mlflow.db", "server.log"} <= {f.name for f in files}
        loose = {str(f.relative_to(tmp_path)): oct(f.stat().st_mode & 0o777) for f in files
                 if f.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO)}
        assert not loose, f"group/world-accessible: {loose}"
    finally:
        stop = run_server_script(*args, "--stop", timeout=60)
    assert stop.returncode == 0, stop.stderr
    assert not group_members(pgid) and not listening_addresses(port)


@pytest.mark.parametrize("how", ["flag", "env"])
def test_database_password_reaches_no_command_line_output_or_log(tmp_path, how):
    """The server cannot start (no PostgreSQL here; an unknown scheme that MLflow quotes back in
    its error), but it runs for seconds first: long enough to be seen in /proc."""
    url = {"flag": f"postgresql://mixer:{SECRET}@127.0.0.1:1/mlflow",
           "env": f"nosuchdb://mixer:{SECRET}@127.0.0.1:1/mlflow"}[how]
    data, port = tmp_path / "data", free_port()
    args = ["bash", SERVER, "--data-dir", str(data), "--port", str(port)]
    env = {**os.environ, "MIXERLAB_MLFLOW_WAIT_S": "60"}
    if how == "flag":
        args += ["--backend-store-uri", url]
    else:
        env["MLFLOW_BACKEND_STORE_URI"] = url
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    leaks, seen_server, me = {}, False, os.getpid()
    t0 = time.time()
    while proc.poll() is None and time.time() - t0 < 90:
        for pid in processes():
            # the script holds a --backend-store-uri for the instant before it re-executes
            # itself without it, long before the server starts
            if pid == me or (pid == proc.pid and not seen_server):
                continue
            line = cmdline(pid)
            seen_server |= "mlflow server" in line and f"--port {port}" in line
            if SECRET in line:
                leaks[pid] = line
        time.sleep(0.02)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode != 0 and seen_server, (proc.returncode, out, err)
    assert not leaks, leaks
    log = (data / "server.log").read_text()
    assert SECRET not in out + err + log
    assert "mixer:***@127.0.0.1:1/mlflow" in out   # the URL is printed, redacted
    if how == "env":
        assert "mixer:***@" in log   # MLflow's own error quotes the URL: redacted on the way


# ---- make mlflow-ui -----------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("sig, to_group", [(signal.SIGTERM, False), (signal.SIGINT, True)],
                         ids=["SIGTERM-to-make", "Ctrl-C"])
def test_make_mlflow_ui_stops_without_leftovers(tmp_path, sig, to_group):
    port = free_port()
    ui_args = f"--port {port} --workers 2 --backend-store-uri sqlite:///{tmp_path / 'ui.db'}"
    # -o: never rebuild the venv from a test
    make = subprocess.Popen(["make", "-s", "-C", str(ROOT), "-o", ".venv/.installed",
                             "mlflow-ui", f"MLFLOW_UI_ARGS={ui_args}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", timeout=180)
        tree = descendants(make.pid)
        assert listening_addresses(port) == {"127.0.0.1"}
        assert not any("huey" in cmdline(p) for p in tree)
        assert len(live(tree)) >= 4   # make, the script, mlflow, uvicorn (+ workers)
        if to_group:   # what a terminal's Ctrl-C does: SIGINT to the foreground group
            os.killpg(make.pid, sig)
        else:
            make.send_signal(sig)
        make.wait(timeout=60)
        assert wait_until(lambda: not live(tree), 20), [cmdline(p) for p in live(tree)]
        assert not listening_addresses(port)
    finally:
        if make.poll() is None:
            make.kill()


# ---- the local SLURM cluster ---------------------------------------------------------------------

@pytest.mark.slurm
def test_slurm_daemons_listen_where_the_readme_says():
    """slurm/README.md: slurmctld (6817) and slurmd (6818) listen on 127.0.0.1 only when the
    host name resolves to loopback (it does in /etc/hosts of this container), else on all
    interfaces; munged has no TCP port."""
    loopback_name = socket.gethostbyname(socket.gethostname()).startswith("127.")
    for port in (6817, 6818):
        addrs = listening_addresses(port)
        assert addrs, f"nothing listens on {port}: is the cluster up (slurm/start_cluster.sh)?"
        if loopback_name:
            assert all(a.startswith("127.") for a in addrs), (port, addrs)
        else:
            assert addrs & {"0.0.0.0", "::"}, (port, addrs)
