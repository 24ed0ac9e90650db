"""Per-trial overhead of ``hydra/sweeper=optuna``: this project's sweeper against the stock
hydra-optuna-sweeper, on a trivial objective, in the same Hydra.

    .venv/bin/python benchmarks/optuna_overhead.py                 # 20 and 40 trials, 3 repeats
    .venv/bin/python benchmarks/optuna_overhead.py --trials 20 40 80 --repeats 5

The app is tests/apps/sphere.py (x^2 + y^2, written for the stock plugin: search space and
direction in its config), run as ``-m`` with Hydra's basic launcher, ``n_jobs`` 2 (both
plugins' default), TPE with seed 0, into a fresh sweep dir. Each run's wall time is the whole
command (interpreter start, plugin scan, study, every job, results). Per plugin, a line
through the median wall times at each trial count gives:

* fixed cost = intercept (start-up, setup, results),
* per-trial overhead = slope (ask, compose the job's config, run the trivial job, tell),

for the wall time and for the CPU time (user + system) of the command, and for the sweeper's
own time: the command's wall time outside Hydra's per-job work (composing each job's config
and running the job, timed by a wrapper, the same for both plugins: the same Hydra code, and
most of the noise on a shared machine). Its slope is the sweeper's per-trial overhead proper:
ask, sample, storage, tell, the launcher's own calls, bookkeeping, logging.

The stock plugin needs ``optuna<3``, which conflicts with the project's Optuna, so it runs in a
venv of its own, built once and cached (``~/.cache/mixerlab/stock-optuna-venv``, or
``$MIXERLAB_STOCK_OPTUNA_VENV``) with ``pip install hydra-core==<this venv's Hydra>
hydra-optuna-sweeper==1.2.0 "optuna<3"``: the same Hydra release as this venv's. The stock
plugin's default storage (in memory) is what it runs with; ours writes its journal file.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "tests" / "apps" / "sphere.py"
STOCK_SWEEPER = "hydra-optuna-sweeper==1.2.0"
VENV = Path(os.environ.get("MIXERLAB_STOCK_OPTUNA_VENV",
                           Path.home() / ".cache" / "mixerlab" / "stock-optuna-venv"))


def stock_python() -> Path:
    """The stock plugin's venv (built on first use); returns its Python."""
    python = VENV / "bin" / "python"
    marker = VENV / ".mixerlab-ready"
    hydra = f"hydra-core=={version('hydra-core')}"
    if marker.exists() and marker.read_text().strip() == hydra:
        return python
    print(f"building {VENV}: pip install {hydra} {STOCK_SWEEPER} 'optuna<3' ...", flush=True)
    VENV.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", hydra, STOCK_SWEEPER,
                    "optuna<3"], check=True)
    marker.write_text(hydra + "\n")
    return python


def installed(python: Path, *packages: str) -> str:
    """``name version`` of each package as ``python`` sees it."""
    code = ("from importlib.metadata import version; import sys; "
            "print(', '.join(f'{p} {version(p)}' for p in sys.argv[1:]))")
    return subprocess.run([str(python), "-c", code, *packages], check=True, capture_output=True,
                          text=True).stdout.strip()


# runs the app with Hydra's per-job work timed (composing each job's config, running the job:
# ConfigLoaderImpl.load_sweep_config and hydra.core.utils.run_job, which every launcher calls;
# patched before Hydra's plugin scan re-imports the launcher modules); at exit it writes
# "<s in that work> <s since start>"
TIMED = """
import atexit, os, runpy, sys, time
from hydra._internal.config_loader_impl import ConfigLoaderImpl
import hydra.core.utils
spent, start = [0.0], time.perf_counter()
def timed(fn):
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - t
    return wrapper
ConfigLoaderImpl.load_sweep_config = timed(ConfigLoaderImpl.load_sweep_config)
hydra.core.utils.run_job = timed(hydra.core.utils.run_job)
atexit.register(lambda: open(os.environ["MIXERLAB_LAUNCH_TIMES"], "w").write(
    f"{spent[0]} {time.perf_counter() - start}"))
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run_once(python: Path, n_trials: int, sweep_dir: Path) -> tuple[float, float, float]:
    """Wall, CPU and outside-launch seconds of one ``sphere.py -m`` sweep of ``n_trials``."""
    times = sweep_dir.with_suffix(".times")
    cmd = [str(python), "-c", TIMED, str(APP), "-m", f"hydra.sweep.dir={sweep_dir}",
           f"hydra.sweeper.n_trials={n_trials}", "hydra.sweeper.sampler.seed=0"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["MIXERLAB_LAUNCH_TIMES"] = str(times)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout}{proc.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    in_launch, in_all = map(float, times.read_text().split())
    return wall, cpu, in_all - in_launch


def fit(xs: list[int], ys: list[float]) -> tuple[float, float]:
    """Least-squares (intercept, slope)."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / \
        sum((x - mx) ** 2 for x in xs)
    return my - slope * mx, slope


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[20, 40])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if len(set(args.trials)) < 2:
        raise SystemExit(f"--trials {args.trials}: give at least two different trial counts")
    plugins = {"ours": Path(sys.executable), "stock": stock_python()}
    for name, python in plugins.items():
        print(f"{name:5s}: {python}  ({installed(python, 'hydra-core', 'optuna')})")
    kinds = ("wall", "CPU", "sweeper")
    medians = {name: {kind: [] for kind in kinds} for name in plugins}
    # minima too: on a shared or virtual machine a run is only ever slowed down by others, so
    # the fastest of n runs is the closest reading of the command's own cost
    minima = {name: {kind: [] for kind in kinds} for name in plugins}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.trials:
            runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in plugins}
            for r in range(args.repeats):
                for name, python in plugins.items():  # interleaved: drift hits both alike
                    runs[name].append(run_once(python, n, Path(tmp) / f"{name}-{n}-{r}"))
            for name in plugins:
                for kind, values in zip(kinds, zip(*runs[name], strict=True), strict=True):
                    medians[name][kind].append(statistics.median(values))
                    minima[name][kind].append(min(values))
                walls = ", ".join(f"{run[0]:.2f}" for run in runs[name])
                print(f"{name:5s} {n:3d} trials: medians wall {medians[name]['wall'][-1]:6.2f} s "
                      f"(runs {walls}), CPU {medians[name]['CPU'][-1]:6.2f} s, sweeper "
                      f"{medians[name]['sweeper'][-1]:6.2f} s", flush=True)
    for statistic, table in (("median", medians), ("minimum", minima)):
        print(f"\nsphere app, basic launcher, n_jobs 2, TPE seed 0, {statistic} of "
              f"{args.repeats}; fixed s / per trial ms")
        print(f"{'plugin':6s}" + "".join(f"{kind + ' fixed':>15s}{kind + ' per trial':>19s}"
                                         for kind in kinds))
        for name in plugins:
            line = f"{name:6s}"
            for kind in kinds:
                intercept, slope = fit(args.trials, table[name][kind])
                line += f"{intercept:15.2f}{slope * 1e3:19.1f}"
            print(line)


if __name__ == "__main__":
    main()
