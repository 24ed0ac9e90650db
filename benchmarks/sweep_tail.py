"""The sweep tail: how long a SLURM sweep's driver takes to return after its last job ended.

    bash slurm/start_cluster.sh                      # the local cluster (needs root)
    .venv/bin/python benchmarks/sweep_tail.py        # every case x launcher once, ~4 min
    .venv/bin/python benchmarks/sweep_tail.py --repeats 3 --cases finished --launchers poll

Runs real 2-job grid sweeps (``hydra/launcher=local_debug``, 8x8 digits, C 16, depth 2) and
times, on one clock:

* end: the last job's own end: the mtime of its result file (``finished``), or the first
  moment ``squeue`` shows it ended after ``scancel`` (``cancelled``; the job takes a few
  seconds to stop, which is SLURM's part, not the driver's);
* noticed: the launcher's ``job <id> done`` debug line (its result file, or SLURM, says the job
  ended: ``hydra.verbose`` turns the line on);
* counted dead: (``cancelled``) the launcher's "ended without a result" error line;
* exit: the driver process ended.

Cases: ``finished``: two jobs of one epoch that finish. ``cancelled``: job 0 runs one epoch,
job 1 forty (batch 2) and is ``scancel``'ed once job 0 is done.

Launchers: ``poll``: this project's, as ``local_debug`` sets it: ``poll_interval_s`` 1 s (or
``--interval``), ``result_grace_s`` 1 s. ``stock``: ``poll_interval_s=null``,
``result_grace_s=15``: submitit's own waiting, as the launcher waited before these settings
existed (result files every 1 s; sacct 2, 4, 8, 16 ... s after the last submission, at most
every 600 s; 15 s for a missing result file). ``poll+freeze``: ``poll`` with the driver calling
``gc.freeze()`` at exit, so the interpreter's final garbage collections skip the heap that
torch, MLflow and Hydra leave (the change proposed for sweep/run.py).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN = str(ROOT / "sweep" / "run.py")
LOGGER = "hydra_plugins.mixerlab_submitit_launcher.launcher"
TINY = ["data=digits", "model.dim=16", "model.depth=2", "trainer.progress=off",
        "trainer.lr=4e-3"]
CASES = {
    "finished": [*TINY, "trainer.epochs=1", "seed=0,1"],
    "cancelled": [*TINY, "trainer.batch_size=2", "trainer.threads=1", "trainer.epochs=1,40"],
}
LAUNCHERS = ("poll", "stock", "poll+freeze")
# the driver, with gc.freeze() registered first among the exit handlers (so it runs last)
FREEZE = ("import atexit, gc, runpy, sys; atexit.register(gc.freeze); "
          "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")
RUNNING = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT")
STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]\[HYDRA\] (.*)$")


def log_time(stamp: str) -> float:
    """Hydra's log time (local, milliseconds) -> seconds since the epoch."""
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def squeue_state(job_id: str) -> str:
    return subprocess.run(["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T"],
                          capture_output=True, text=True).stdout.strip()


def wait_for(what: str, cond, proc: subprocess.Popen, timeout: float = 300) -> object:
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = cond()
        if value:
            return value
        if proc.poll() is not None:
            raise RuntimeError(f"the sweep ended while waiting for {what}:\n"
                               f"{proc.communicate()[0][-3000:]}")
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"timed out waiting for {what}")


def run_sweep(case: str, launcher: str, interval: float, tmp: Path, n: int) -> dict:
    sweep = tmp / f"{case}-{launcher}-{n}"
    args = [RUN, "-m", "hydra/launcher=local_debug", *CASES[case],
            f"hydra.sweep.dir={sweep}", f"tracking.uri=sqlite:///{sweep}.db",
            "tracking.experiment=sweep_tail", f"hydra.verbose={LOGGER}"]
    if launcher == "stock":
        args += ["hydra.launcher.poll_interval_s=null", "hydra.launcher.result_grace_s=15"]
    else:
        args.append(f"hydra.launcher.poll_interval_s={interval}")
    cmd = [sys.executable, *(["-c", FREEZE] if launcher == "poll+freeze" else []), *args]
    env = {**os.environ, "MIXERLAB_CACHE": str(tmp / ".cache")}
    proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    submitit = sweep / ".submitit"
    end = None
    if case == "cancelled":
        wait_for("job 0's result", lambda: list(submitit.glob("*_0/*_0_0_result.pkl")), proc)
        job1 = wait_for("job 1", lambda: [p.name for p in submitit.glob("*_1") if p.is_dir()],
                        proc)[0]
        wait_for("job 1 running", lambda: squeue_state(job1) == "RUNNING", proc)
        time.sleep(1.0)  # into its training
        subprocess.run(["scancel", job1], check=True)
        end = wait_for("job 1 ended", lambda: squeue_state(job1) not in RUNNING and time.time(),
                       proc)
    out = proc.communicate(timeout=900)[0]
    exit_t = time.time()
    if case == "finished":
        if proc.returncode != 0:
            raise RuntimeError(f"the sweep failed:\n{out[-3000:]}")
        end = max(p.stat().st_mtime for p in submitit.glob("*/*_result.pkl"))
    noticed, dead = {}, {}
    for line in out.splitlines():
        m = STAMP.match(line)
        if not m:
            continue
        if d := re.match(r"job (\S+) done$", m.group(2)):
            noticed[d.group(1)] = log_time(m.group(1))
        elif d := re.match(r"job #\d+: job (\S+) ended without a result", m.group(2)):
            dead[d.group(1)] = log_time(m.group(1))
    return {"case": case, "launcher": launcher, "end": end,
            "noticed": max(noticed.values()) - end if noticed else None,
            "dead": max(dead.values()) - end if dead else None,
            "exit": exit_t - end, "rc": proc.returncode}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--launchers", default=",".join(LAUNCHERS))
    parser.add_argument("--interval", type=float, default=1.0,
                        help="hydra.launcher.poll_interval_s of the poll launchers")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    if not shutil.which("sinfo") or subprocess.run(["sinfo"], capture_output=True).returncode:
        sys.exit("sweep_tail: no SLURM cluster answers; start one with bash slurm/start_cluster.sh")
    print(f"load average {os.getloadavg()[0]:.2f} (1 min) at the start")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(args.repeats):
            for case in args.cases.split(","):
                for launcher in args.launchers.split(","):
                    r = run_sweep(case, launcher, args.interval, Path(tmp), n)
                    rows.append(r)
                    print(f"  {case} / {launcher}: noticed {fmt(r['noticed'])}, exit "
                          f"{fmt(r['exit'])} s after the last job ended (rc {r['rc']})",
                          flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} (1 min) at the end\n")
    print("| case | launcher | runs | last job ended -> noticed | -> counted dead "
          "| -> driver exit |")
    print("|---|---|---:|---:|---:|---:|")
    for case in args.cases.split(","):
        for launcher in args.launchers.split(","):
            mine = [r for r in rows if r["case"] == case and r["launcher"] == launcher]
            print(f"| {case} | {launcher} | {len(mine)} | {median(mine, 'noticed')} | "
                  f"{median(mine, 'dead')} | {median(mine, 'exit')} |")
    print("\nseconds, median over the runs; stock: submitit's own waiting (no 'job done' "
          "line)")


def fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1f}"


def median(rows: list[dict], key: str) -> str:
    values = [r[key] for r in rows if r[key] is not None]
    return fmt(statistics.median(values)) if values else "n/a"


if __name__ == "__main__":
    main()
