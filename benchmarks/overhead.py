"""Platform overhead of a sweep: time outside training and evaluation steps.

    .venv/bin/python benchmarks/overhead.py            # the demo sweep (make demo's), ~2.5 min
    .venv/bin/python benchmarks/overhead.py -- data.max_train=2000   # extra overrides
    # model_comparison in full: 21 jobs of 4 epochs, 60-110 s each (36 min on an idle 2-core
    # host of the slower kind); or 2 of them at their real size (the job count only changes
    # the driver's share)
    .venv/bin/python benchmarks/overhead.py --experiment model_comparison
    .venv/bin/python benchmarks/overhead.py --experiment model_comparison -- \
        seed=0 '+variant=vanilla,asym_lam1e-2'

Runs `python sweep/run.py -m +experiment=<experiment>` (Hydra's basic launcher: every job in
the driver's process) into a temporary directory and a fresh SQLite store, then reads each
job's `job_time_s` (task start to its model logged), `overhead_s` (job time not in training or
evaluation steps: data loading, model building, tracking, checkpointing, symmetry measures,
the model's export) from MLflow. The driver's own time (interpreter start, imports, config
composition, the parent run and the store's creation, each job's final tracking calls, exit)
is the sweep's wall time minus the jobs' time, shared over the jobs. Also times a cached
Fashion-MNIST load. The data cache and the template of new MLflow stores are warmed first
(each is built once per machine), the store itself is new.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tracking.parent_run import PARENT_TAG  # noqa: E402
from tracking.run_store import RunStore  # noqa: E402
from tracking.store_template import template_path  # noqa: E402


def cached_load_seconds(cache: Path) -> tuple[float, float]:
    from data import load_dataset

    t = time.perf_counter()
    load_dataset("fashion_mnist", cache_dir=str(cache))
    first = time.perf_counter() - t
    t = time.perf_counter()
    load_dataset("fashion_mnist", cache_dir=str(cache))
    return first, time.perf_counter() - t


def main() -> None:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="demo",
                        help="conf/experiment/<name>.yaml to run (demo, model_comparison, ...)")
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        first, cached = cached_load_seconds(tmp / "cache")
        print(f"Fashion-MNIST load: first decode {first:.2f} s, cached {cached:.3f} s")
        # a new store is a copy of a template built once per machine and MLflow version
        # (tracking/store_template.py): warm it as the data cache is, and say what it cost
        os.environ["MIXERLAB_CACHE"] = str(tmp / "cache")
        t = time.perf_counter()
        template_path()
        print(f"MLflow store template: built in {time.perf_counter() - t:.2f} s (once per "
              f"machine and MLflow version; each new store then copies it)")
        uri = f"sqlite:///{tmp / 'mlflow.db'}"
        cmd = [sys.executable, str(ROOT / "sweep" / "run.py"), "-m",
               f"+experiment={args.experiment}",
               f"tracking.uri={uri}", "tracking.experiment=overhead",
               f"hydra.sweep.dir={tmp / 'sweep'}", "trainer.progress=off", *extra]
        t = time.perf_counter()
        subprocess.run(cmd, cwd=tmp, check=True, capture_output=True,
                       env={**os.environ, "MIXERLAB_CACHE": str(tmp / "cache")})
        wall = time.perf_counter() - t
        store = RunStore(uri)
        jobs = [r for r in store.runs(store.experiment_id("overhead")) if PARENT_TAG in r.tags]
    job_total = sum(r.metrics["job_time_s"] for r in jobs)
    driver = (wall - job_total) / len(jobs)
    print(f"{args.experiment} {' '.join(extra)}: sweep wall time {wall:.1f} s for {len(jobs)} "
          f"jobs; driver time (start, imports, composition, parent run, final tracking calls, "
          f"exit) {wall - job_total:.1f} s")
    print(f"{'job':28} {'wall s':>7} {'compute s':>9} {'overhead s':>10} {'overhead':>8}")
    fractions = []
    for r in sorted(jobs, key=lambda r: r.run_name):
        m = r.metrics
        total = m["job_time_s"] + driver
        over = m["overhead_s"] + driver
        fractions.append(over / total)
        print(f"{r.run_name:28} {total:7.1f} {total - over:9.1f} {over:10.1f} "
              f"{100 * over / total:7.1f}%")
    print(f"overhead per job: max {100 * max(fractions):.1f}%, "
          f"mean {100 * sum(fractions) / len(fractions):.1f}% (target <= 3%)")


if __name__ == "__main__":
    main()
