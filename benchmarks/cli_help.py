"""`python sweep/run.py --help`: seconds to the app's help, in fresh processes.

    .venv/bin/python benchmarks/cli_help.py              # 7 runs
    .venv/bin/python benchmarks/cli_help.py --repeats 15

Budget (issue 18): under 2 s. What it costs: the interpreter, Hydra and the config
composition; torch, MLflow, Optuna and the project's data/model packages are imported only
by a job (sweep/run.py, sweep/prelaunch.py, sweep/mlflow_parent.py import them where used),
which the last column checks: it lists heavy modules the help process imported (none).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 2.0
HEAVY = ("torch", "mlflow", "optuna", "submitit", "sqlalchemy", "models", "data", "training")


def heavy_imports() -> list[str]:
    """Heavy top-level modules a `--help` process imports (from `python -X importtime`)."""
    done = subprocess.run([sys.executable, "-X", "importtime", str(ROOT / "sweep" / "run.py"),
                           "--help"], cwd=ROOT, capture_output=True, text=True, check=True)
    names = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
             if line.startswith("import time:")}
    return sorted(n for n in names if n in HEAVY)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        subprocess.run([sys.executable, str(ROOT / "sweep" / "run.py"), "--help"], cwd=ROOT,
                       check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    heavy = heavy_imports()
    print(f"sweep/run.py --help over {args.repeats} fresh processes: "
          f"min {min(times):.2f} s, median {statistics.median(times):.2f} s, "
          f"max {max(times):.2f} s (budget {BUDGET_S:.1f} s: "
          f"{'met' if statistics.median(times) <= BUDGET_S else 'MISSED'})")
    print(f"heavy modules imported: {', '.join(heavy) if heavy else 'none'}")


if __name__ == "__main__":
    main()
