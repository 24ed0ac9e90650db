"""The paper's figures and tables from the runs logged to MLflow.

    python analysis/make_figures.py --experiment demo --out figures/demo
    python analysis/make_figures.py --experiment sb_strength --sweep sb_strength
    python analysis/make_figures.py --tracking-uri http://127.0.0.1:5000 --experiment search

Each figure is drawn only when its runs exist (the script says which were skipped and why,
and which run's file it refused to load: a checkpoint that is not only tensors, or an output
dir that is not the run's, one line each);
figures go to ``--out`` as PNG and PDF, their tables beside them as CSV, Markdown and LaTeX,
all of them in one self-contained ``report.html`` (analysis/report.py), and all are logged
to the sweep's MLflow parent run under ``figures/``.
Exit status: 0 when at least one figure was drawn, 1 when none could be, 2 when the store,
experiment or sweep holds no runs.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

# `python analysis/make_figures.py` puts analysis/ on sys.path, not the project root
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis import (  # noqa: E402
    fig_accuracy,
    fig_energy,
    fig_energy_metaformer,
    fig_lambda,
    fig_n_iter,
    fig_optuna,
    fig_symmetry,
)
from analysis.figure_result import Drawn, Skipped  # noqa: E402
from analysis.load_runs import NoRunsError, RunTables, load_runs  # noqa: E402
from analysis.report import make_figures_command, write_report  # noqa: E402
from analysis.tables import write_table  # noqa: E402

# (name, what it shows, draw function)
FIGURES: list[tuple[str, str, Callable[[RunTables, Path], Drawn | list[Drawn]]]] = [
    (fig_accuracy.NAME, "accuracy of each model, mean and 95% CI over seeds", fig_accuracy.draw),
    (fig_lambda.NAME, "AsymMixer accuracy against lam", fig_lambda.draw),
    (fig_symmetry.NAME_VANILLA, "vanilla Mixer weight symmetry per epoch",
     fig_symmetry.draw_vanilla),
    (fig_symmetry.NAME_V_RATIO, "AsymMixer ||V||/||W|| against lam", fig_symmetry.draw_v_ratio),
    (fig_energy.NAME, "energy along the dynamics of trained parallel blocks", fig_energy.draw),
    (fig_n_iter.NAME, "n_iter ablation", fig_n_iter.draw),
    ("fig6_optuna", "Optuna history, importances, lam slice", fig_optuna.draw),
    (fig_energy_metaformer.NAME, "energy MetaFormer: receptive fields, energy descent",
     fig_energy_metaformer.draw),
]
# per-epoch metrics the figures read (fewer requests against a tracking server)
EPOCH_METRICS = ["test_acc", "test_loss", "val_acc", "val_loss", "train_loss", "symmetry/*"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (``argv`` None: sys.argv)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow store: sqlite:///path.db or http://host:port "
                        "(default: sqlite:///<cwd>/mlflow.db, the project's default)")
    p.add_argument("--experiment", default="mixer-symmetry",
                   help="MLflow experiment name (default: mixer-symmetry)")
    p.add_argument("--sweep", default=None,
                   help="only the runs of this sweep: its parent run's name (the latest sweep "
                        "of that name) or run id (default: every run of the experiment)")
    p.add_argument("--out", type=Path, default=Path("figures"), help="output folder")
    p.add_argument("--no-log", action="store_true",
                   help="do not log the figures to the sweep's MLflow parent run")
    return p.parse_args(argv)


def _log_to_parent(tables: RunTables, files: list[Path]) -> str | None:
    """Log ``files`` to the selection's (latest) sweep parent run; returns its name."""
    if tables.parents.empty or not files:
        return None
    from tracking.run_store import RunStore

    parent = tables.parents.sort_values("start_time").iloc[-1]
    RunStore(tables.tracking_uri).log_artifacts(parent["run_id"], files, "figures")
    return f"{parent['run_name']} ({parent['run_id']})"


def _print_refusals() -> None:
    """Print what the figure modules log at WARNING or above (e.g. fig_energy's refused
    checkpoints) as lines of this script's report, once however often main() runs."""
    logger = logging.getLogger("analysis")
    if not any(h.get_name() == "make_figures" for h in logger.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.set_name("make_figures")
        handler.setFormatter(logging.Formatter("  refused %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)


def make_figures(tables: RunTables, out: Path) -> tuple[list[Drawn], list[tuple[str, str]]]:
    """Draw every figure the runs allow into ``out``; returns (drawn, [(name, why skipped)])."""
    drawn: list[Drawn] = []
    skipped: list[tuple[str, str]] = []
    for name, _what, draw in FIGURES:
        try:
            result = draw(tables, out)
        except Skipped as why:
            skipped.append((name, str(why)))
            continue
        for item in result if isinstance(result, list) else [result]:
            if item.files:
                drawn.append(item)
            else:
                skipped.append((item.name, item.note.removeprefix("skipped: ")))
    return drawn, skipped


def main(argv: list[str] | None = None) -> int:
    """Load the runs, draw, write the tables, log to the parent run; returns the exit status."""
    args = parse_args(argv)
    t0 = time.perf_counter()
    try:
        tables = load_runs(args.tracking_uri, args.experiment, args.sweep,
                           metrics=EPOCH_METRICS)
    except NoRunsError as err:
        print(f"make_figures: error: {err}", file=sys.stderr)
        return 2
    where = f"sweep {args.sweep!r} of " if args.sweep else ""
    print(f"{len(tables.runs)} runs from {where}experiment {args.experiment!r} at "
          f"{tables.tracking_uri} ({len(tables.epochs)} per-epoch values)")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    _print_refusals()
    drawn, skipped = make_figures(tables, out)
    files: list[Path] = []
    for item in drawn:
        files += item.files
        for table_name, df in item.tables.items():
            files += write_table(df, out, table_name, caption=table_name.replace("_", " "))
        note = f" ({item.note})" if item.note else ""
        print(f"  drew    {item.name}: {', '.join(str(f) for f in item.files)}{note}")
    for name, why in skipped:
        print(f"  skipped {name}: {why}")
    runs_csv = out / "runs.csv"
    tables.runs.to_csv(runs_csv, index=False)
    report = write_report(out, drawn, skipped, tables,
                          make_figures_command(sys.argv[1:] if argv is None else argv))
    files.append(report)
    print(f"  report  {report}")
    if not drawn:
        print(f"make_figures: no figure could be drawn from these runs (see above); the run "
              f"table is in {runs_csv}", file=sys.stderr)
        return 1
    if not args.no_log:
        try:
            parent = _log_to_parent(tables, files)
            if parent:
                print(f"logged {len(files)} files to the sweep parent run {parent} under "
                      "figures/")
        except Exception as err:  # noqa: BLE001 - the files are on disk; never fatal
            print(f"warning: could not log the figures to MLflow: {err}", file=sys.stderr)
    print(f"{len(drawn)} figures, {len(skipped)} skipped, in {out}/ "
          f"({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
