"""Worker utilisation of the Optuna sweeper: asynchronous trials against batch mode.

    .venv/bin/python benchmarks/optuna_async.py                      # 24 trials, 4 workers
    .venv/bin/python benchmarks/optuna_async.py --trials 32 --launcher local_debug   # SLURM
    .venv/bin/python benchmarks/optuna_async.py --log --max-s 30     # log-uniform 1-30 s

The app is tests/apps/sleep_task.py: each trial sleeps ``duration_s``, a searched parameter
(``interval(1, 10)`` s; ``--log``: ``tag(log, interval(...))``, most trials short and a few
long), so trial durations vary. The same search (random sampler, seed 0: the
same durations in both modes, trial by trial) runs twice, ``n_jobs`` 4 workers,
``hydra/launcher=submitit_local`` (a process per job on this machine) unless told otherwise:

* async: ``hydra.sweeper.async_trials=true`` (the default): the next trial starts as soon as
  any ends;
* batch: ``hydra.sweeper.async_trials=false``: 4 trials launched together, each batch awaited
  whole.

Printed per mode, utilisation = busy / (workers x wall) in two readings:

* worker (slot) utilisation: a worker is busy from a job's submission (its
  ``.submitit/<id>/<id>_submitted.pkl``) to its result (``<id>_0_result.pkl``): process start,
  Hydra composing the job and the task; idle is what the sweeper leaves unused (the slowest
  trial of a batch, the time to notice an end and submit the next). wall = first submission
  to last result (the trial phase: start-up and results are the same in both modes);
* task utilisation: busy = the tasks' own run times (each trial writes its start and end,
  ``timing.json``), wall = first task start to last task end: also counts the job's process
  start (about 1 s per job on an idle 2-core machine, more when 4 start at once) as idle;

and the command's whole wall time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "tests" / "apps" / "sleep_task.py"


def run(mode: str, sweep_dir: Path, args: argparse.Namespace) -> dict[str, float]:
    """One sweep in ``mode`` (async or batch); its timings."""
    cmd = [sys.executable, str(APP), "-m", f"hydra.sweep.dir={sweep_dir}",
           f"hydra/launcher={args.launcher}", f"hydra.sweeper.n_trials={args.trials}",
           f"hydra.sweeper.n_jobs={args.workers}", "hydra.sweeper.sampler.seed=0",
           f"hydra.sweeper.async_trials={mode == 'async'}",
           f"duration_s={_duration_space(args)}", *args.overrides]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    command_s = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout}{proc.stderr}")
    tasks = [json.loads(p.read_text()) for p in sweep_dir.glob("*/timing.json")]
    slots = [{"start": p.stat().st_mtime, "end": _result(p).stat().st_mtime}
             for p in sweep_dir.glob(".submitit/*/*_submitted.pkl")]
    if len(tasks) != args.trials or len(slots) != args.trials:
        raise SystemExit(f"{mode}: {len(tasks)} timing.json, {len(slots)} submitted jobs for "
                         f"{args.trials} trials")
    return {"command_s": command_s, **_utilisation("worker", slots, args.workers),
            **_utilisation("task", tasks, args.workers)}


def _duration_space(args: argparse.Namespace) -> str:
    """The searched ``duration_s``: uniform, or log-uniform (``--log``: most trials short, a
    few long, as when a search varies width and depth)."""
    space = f"interval({args.min_s},{args.max_s})"
    return f"tag(log,{space})" if args.log else space


def _result(submitted: Path) -> Path:
    return submitted.with_name(submitted.name.replace("_submitted.pkl", "_0_result.pkl"))


def _utilisation(name: str, spans: list[dict[str, float]], workers: int) -> dict[str, float]:
    busy = sum(s["end"] - s["start"] for s in spans)
    wall = max(s["end"] for s in spans) - min(s["start"] for s in spans)
    return {f"{name}_busy_s": busy, f"{name}_wall_s": wall,
            f"{name}_utilisation": busy / (workers * wall)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--min-s", type=float, default=1.0)
    parser.add_argument("--max-s", type=float, default=10.0)
    parser.add_argument("--log", action="store_true",
                        help="log-uniform durations between --min-s and --max-s")
    parser.add_argument("--launcher", default="submitit_local")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for both runs")
    args = parser.parse_args()
    print(f"sleep_task: {args.trials} trials of {args.min_s:g}-{args.max_s:g} s "
          f"({'log-uniform' if args.log else 'uniform'}, random sampler, "
          f"seed 0), {args.workers} workers, hydra/launcher={args.launcher}", flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("async", "batch"):
            results[mode] = run(mode, Path(tmp) / mode, args)
            r = results[mode]
            print(f"{mode:5s}: worker utilisation {r['worker_utilisation']:6.1%} (trial phase "
                  f"{r['worker_wall_s']:5.1f} s), task utilisation {r['task_utilisation']:6.1%} "
                  f"(busy {r['task_busy_s']:5.1f} s of {r['task_wall_s']:5.1f} s), command "
                  f"{r['command_s']:5.1f} s", flush=True)
    speedup = results["batch"]["worker_wall_s"] / results["async"]["worker_wall_s"]
    print(f"async: trial phase {speedup:.2f}x shorter than batch mode")


if __name__ == "__main__":
    main()
