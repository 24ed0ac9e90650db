"""Job start: seconds from process start to a job's first training step.

    .venv/bin/python benchmarks/job_start.py              # 5 runs of each setting
    .venv/bin/python benchmarks/job_start.py --repeats 9

Runs ``python sweep/run.py data=digits trainer.epochs=1 model.dim=16 model.depth=2`` (a job
whose training is negligible) in fresh processes, with tracking disabled and on a warm SQLite
store (created by a first, untimed job), and times each debug milestone the job logs
(``hydra.verbose=[sweep,training]``; sweep/task.py, training/trainer.py) from the moment the
process was launched, read from the log records' own clock. Prints the median of each over
the runs; ``imports`` is the time to ``task started`` less the config composition, measured
separately as the time to import sweep/run.py's modules in a fresh process.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JOB = ["data=digits", "trainer.epochs=1", "model.dim=16", "model.depth=2", "trainer.progress=off",
       "hydra.verbose=[sweep,training]",
       "hydra.job_logging.formatters.simple.format='%(created).6f %(message)s'"]
# (label, the message the job logs when it is reached)
MILESTONES = (("task started", "task started"),
              ("model and data built", "config checked, model and data built"),
              ("tracker opened", "tracker opened"),
              ("trainer built (optimizer)", "trainer built"),
              ("tracking run started", "tracking run started"),
              ("first step done", "epoch 1: first step done"))


def run_job(tmp: Path, n: int, tracking: list[str]) -> dict[str, float]:
    """One job in a fresh process: seconds from its launch to each milestone."""
    out = tmp / f"job{n}"
    cmd = [sys.executable, str(ROOT / "sweep" / "run.py"), *JOB, *tracking,
           f"hydra.run.dir={out}"]
    t0 = time.time()
    subprocess.run(cmd, cwd=tmp, check=True, capture_output=True)
    stamps: dict[str, float] = {}
    for line in (out / "mixerlab.log").read_text().splitlines():
        created, _, message = line.partition(" ")
        for label, text in MILESTONES:
            if message == text and label not in stamps:
                stamps[label] = float(created) - t0
    return stamps


def import_seconds() -> float:
    """Seconds for a fresh interpreter to import what sweep/run.py imports, less its start."""
    def timed(code: str) -> float:
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
        return time.perf_counter() - t

    return timed("import sweep.run") - timed("pass")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    imports = statistics.median(import_seconds() for _ in range(args.repeats))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        store = ["tracking.enabled=true", f"tracking.uri=sqlite:///{tmp / 'mlflow.db'}"]
        run_job(tmp, 0, store)  # creates and migrates the store: the others find it warm
        settings = {"tracking disabled": ["tracking.enabled=false"],
                    "warm SQLite store": store}
        results = {name: [run_job(tmp, 1 + i + 100 * k, extra) for i in range(args.repeats)]
                   for k, (name, extra) in enumerate(settings.items())}
    print(f"job start, median of {args.repeats} fresh processes, seconds since launch "
          f"(imports of sweep/run.py alone: {imports:.2f} s)")
    names = list(results)
    print(f"{'milestone':28}" + "".join(f"{n:>20}" for n in names))
    for label, _ in MILESTONES:
        cells = []
        for name in names:
            values = [r[label] for r in results[name] if label in r]
            cells.append(f"{statistics.median(values):20.2f}" if values else f"{'-':>20}")
        print(f"{label:28}" + "".join(cells))


if __name__ == "__main__":
    main()
