"""analysis/make_figures.py on a small real sweep (tests/conftest.py ``analysis_sweep``): the
figures exist at their size, the tables behind them hold the numbers MLflow holds, runs are
selected by sweep name and id, and an empty store fails clearly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from mlflow.tracking import MlflowClient
from PIL import Image
from scipy import stats

from analysis import NoRunsError, load_runs
from analysis.make_figures import main, make_figures
from analysis.significance import welch_table

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT / "analysis" / "make_figures.py")
# name -> pixel size (inches x DPI 200, analysis/style.py)
EXPECTED = {"fig1_accuracy": (1400, 800), "fig2_accuracy_vs_lambda": (1400, 800),
            "fig3a_vanilla_symmetry": (1600, 1200), "fig3b_v_ratio_vs_lambda": (1800, 760),
            "fig4_energy": (2200, 1280)}


def make_figures_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def child_runs_frame(store) -> pd.DataFrame:
    """The fixture's job runs, straight from MlflowClient (independent of analysis/)."""
    client = MlflowClient(store.uri)
    rows = []
    for rid in store.child_run_ids:
        run = client.get_run(rid)
        rows.append({"run_id": rid, "model": run.data.params["model.name"],
                     "sb_lambda": float(run.data.params["model.sb_lambda"]),
                     "acc": run.data.metrics["final_test_acc"],
                     "val": run.data.metrics.get("val_acc", float("nan"))})
    return pd.DataFrame(rows)


def test_figures_exist_with_expected_size(figures):
    out, proc = figures
    for name, size in EXPECTED.items():
        png = out / f"{name}.png"
        assert png.exists(), f"{name} missing; stdout:\n{proc.stdout}"
        assert (out / f"{name}.pdf").stat().st_size > 1000
        with Image.open(png) as img:
            assert img.size == size, (name, img.size)
            pixels = np.asarray(img.convert("L"), dtype=float)
        assert png.stat().st_size > 20_000 and pixels.std() > 10, f"{name} looks empty"
    # the figures without runs are named as skipped, with the reason
    assert "skipped fig5_n_iter: needs runs at >= 2 values of model.n_iter" in proc.stdout
    assert "skipped fig6_optuna: no Optuna trial runs" in proc.stdout
    for table in ("table1_accuracy", "table2_accuracy_vs_lambda", "table2b_best_lambda",
                  "table4_energy"):
        for ext in ("csv", "md", "tex"):
            assert (out / f"{table}.{ext}").stat().st_size > 0
    tex = (out / "table1_accuracy.tex").read_text()
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex
    assert "| SymMixer | sym |" in (out / "table1_accuracy.md").read_text()


def test_figures_logged_to_parent_run(figures, analysis_sweep):
    client = MlflowClient(analysis_sweep.uri)
    names = {Path(a.path).name for a in client.list_artifacts(analysis_sweep.parent_run_id,
                                                              "figures")}
    assert {f"{n}.png" for n in EXPECTED} <= names
    assert "table1_accuracy.csv" in names


def test_accuracy_table_matches_mlflow(figures, analysis_sweep):
    out, _ = figures
    table = pd.read_csv(out / "table1_accuracy.csv")
    df = child_runs_frame(analysis_sweep)
    df["key"] = [f"{m} {sb_lambda:g}" if m == "asym" else m
                 for m, sb_lambda in zip(df["model"], df["sb_lambda"], strict=True)]
    expected = df.groupby("key")["acc"].agg(["mean", "std", "count"])
    table["key"] = [f"{m} {sb_lambda:g}" if m == "asym" else m for m, sb_lambda in
                    zip(table["model"], table["λ"], strict=False)]
    table = table.set_index("key")
    assert set(table.index) == {"vanilla", "sym", "asym 0", "asym 0.01", "asym 1"}
    for key, row in expected.iterrows():
        assert table.loc[key, "seeds"] == row["count"] == 2
        assert table.loc[key, "acc_mean"] == pytest.approx(row["mean"], abs=1e-9)
        assert table.loc[key, "acc_std"] == pytest.approx(row["std"], abs=1e-9)
        assert table.loc[key, "acc_lo"] < row["mean"] < table.loc[key, "acc_hi"] or \
            row["std"] == 0
    # the paper's order: SymMixer, AsymMixer from large to small sb_lambda, vanilla
    assert list(table["variant"]) == ["SymMixer", "AsymMixer λ=1", "AsymMixer λ=1e-2",
                                      "AsymMixer λ=0", "MLP-Mixer (vanilla)"]


def _welch_by_hand(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """t, dof and two-sided p of Welch's test, from the formulas (not scipy's ttest_ind)."""
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    t = (a.mean() - b.mean()) / np.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return t, dof, 2 * stats.t.sf(abs(t), dof)


def test_welch_tables_match_mlflow(figures, analysis_sweep):
    out, _ = figures
    df = child_runs_frame(analysis_sweep)
    df["key"] = [f"{m} {sb_lambda:g}" if m == "asym" else m
                 for m, sb_lambda in zip(df["model"], df["sb_lambda"], strict=True)]
    for reference, name in (("vanilla", "table1b_welch_vs_vanilla"),
                            ("sym", "table1c_welch_vs_sym")):
        table = pd.read_csv(out / f"{name}.csv")
        # every other variant of the fixture, once, against the reference
        assert len(table) == 4 and set(table["n"]) == set(table["n_ref"]) == {2}
        ref = df[df["key"] == reference]["acc"].to_numpy()
        for _, row in table.iterrows():
            key = f"asym {row['λ']:g}" if row["λ"] == row["λ"] else \
                {"SymMixer": "sym", "MLP-Mixer (vanilla)": "vanilla"}[row["variant"]]
            acc = df[df["key"] == key]["acc"].to_numpy()
            assert row["diff"] == pytest.approx(acc.mean() - ref.mean(), abs=1e-9)
            if acc.std() + ref.std() == 0:  # tied seeds: no spread, t undefined
                assert np.isnan(row["t"]) or np.isinf(row["t"])
                continue
            t, dof, p = _welch_by_hand(acc, ref)
            assert (row["t"], row["dof"], row["p"]) == pytest.approx((t, dof, p), rel=1e-6)
    assert (out / "table1b_welch_vs_vanilla.md").read_text().startswith("| variant |")


def test_welch_table_compares_within_an_architecture():
    def runs(model, sb_lambda, depth, accs):
        return [{"model": model, "sb_lambda": sb_lambda, "depth": depth, "dim": 16, "dataset": "d",
                 "n_iter": 1, "status": "FINISHED", "acc": a} for a in accs]
    df = pd.DataFrame(runs("vanilla", 0.0, 2, [80, 81, 82]) + runs("sym", 0.0, 2, [70, 71, 72])
                      + runs("asym", 1e-4, 2, [79, 81, 83]) + runs("vanilla", 0.0, 4, [90, 91])
                      + runs("sym", 0.0, 4, [80, 85]) + runs("sym", 0.0, 8, [60, 61]))
    table = welch_table(df, "vanilla")
    # depth 8 has no vanilla runs: nothing to compare there
    assert list(zip(table["variant"], table["depth"], strict=True)) == [
        ("SymMixer", 2), ("SymMixer", 4), ("AsymMixer λ=1e-4", 2)]
    sym2 = table.iloc[0]
    assert sym2["diff"] == pytest.approx(-10.0)
    assert sym2["t"] == pytest.approx(-10 / np.sqrt(2 / 3))  # s² = 1 in both groups
    assert sym2["dof"] == pytest.approx(4.0)
    assert sym2["p"] == pytest.approx(2 * stats.t.sf(10 / np.sqrt(2 / 3), 4))
    assert sym2["p"] < 1e-3
    # same mean, more spread: no evidence of a gap
    asym = table.iloc[2]
    assert asym["diff"] == pytest.approx(0.0) and asym["p"] == pytest.approx(1.0)
    assert welch_table(df[df["model"] != "vanilla"], "vanilla").empty


def test_lambda_table_matches_mlflow(figures, analysis_sweep):
    out, _ = figures
    table = pd.read_csv(out / "table2_accuracy_vs_lambda.csv")
    df = child_runs_frame(analysis_sweep)
    curve = table[table["curve"] == "asym"].set_index("λ")["acc_mean"]
    asym = df[df["model"] == "asym"].groupby("sb_lambda")["acc"].mean()
    assert sorted(curve.index) == [0.01, 1.0]
    for sb_lambda in curve.index:
        assert curve[sb_lambda] == pytest.approx(asym[sb_lambda])
    ref0 = table[table["curve"] == "asym λ=0"]["acc_mean"].item()
    assert ref0 == pytest.approx(asym[0.0])
    sym = table[table["curve"] == "sym"]["acc_mean"].item()
    assert sym == pytest.approx(df[df["model"] == "sym"]["acc"].mean())
    # the vanilla Mixer is a reference row too (figure 2 draws it as a line)
    vanilla = table[table["curve"] == "vanilla"]["acc_mean"].item()
    assert vanilla == pytest.approx(df[df["model"] == "vanilla"]["acc"].mean())
    # the best lam: the highest mean validation accuracy, never the test accuracy
    best = pd.read_csv(out / "table2b_best_lambda.csv")
    val = df[df["model"] == "asym"].groupby("sb_lambda")["val"].mean()
    if val.notna().any():
        assert best["selected_on"].item() == "val_acc"
        assert best["λ"].item() == val.idxmax()
        assert best["val_acc_mean"].item() == pytest.approx(val.max())
    else:  # the fixture's jobs held out no validation split
        assert best["selected_on"].item() == "none: no val_acc"


def test_vanilla_symmetry_table_matches_mlflow(figures, analysis_sweep):
    out, _ = figures
    table = pd.read_csv(out / "table3a_vanilla_symmetry.csv")
    client = MlflowClient(analysis_sweep.uri)
    df = child_runs_frame(analysis_sweep)
    vanilla = df[df["model"] == "vanilla"]["run_id"]
    for part in ("token", "channel"):
        for block in (0, 1):
            hist = [{m.step: m.value for m in client.get_metric_history(
                rid, f"symmetry/b{block}/{part}/cos")} for rid in vanilla]
            for epoch in (1, 2):
                row = table[(table["measure"] == "cos") & (table["part"] == part)
                            & (table["block"] == block) & (table["epoch"] == epoch)]
                assert row["n"].item() == 2
                assert row["mean"].item() == pytest.approx(np.mean([h[epoch] for h in hist]))
    assert set(table["measure"]) == {"cos", "symfrac"}


def test_v_ratio_table_matches_mlflow(figures, analysis_sweep):
    out, _ = figures
    table = pd.read_csv(out / "table3b_v_ratio.csv")
    client = MlflowClient(analysis_sweep.uri)
    df = child_runs_frame(analysis_sweep)
    for sb_lambda, grp in df[df["model"] == "asym"].groupby("sb_lambda"):
        values = [client.get_run(r).data.metrics["symmetry/mean/channel/v_ratio"]
                  for r in grp["run_id"]]
        row = table[(table["part"] == "channel") & (table["block"] == "mean")
                    & (table["λ"] == sb_lambda)]
        assert row["mean"].item() == pytest.approx(np.mean(values))


def test_energy_from_checkpoints(figures):
    out, _ = figures
    table = pd.read_csv(out / "table4_energy.csv")
    assert set(table["model"]) == {"SymMixer", "AsymMixer λ=0"}
    assert set(table["start"]) == {"gaussian", "real"}
    assert set(table["norm"]) == {"affine-free", "affine"}
    sym = table[(table["model"] == "SymMixer") & (table["norm"] == "affine-free")]
    # the theorem: the affine-free symmetric block's energy never rises along the dynamics,
    # from Gaussian states and from the run's own test images
    assert len(sym) == 2 * 3 and (sym["steps_energy_rose"] == 0).all()
    assert (sym["E_end"] < sym["E_start"]).all()
    assert set(table["S"]) == {4} and set(table["C"]) == {16}  # 8x8 digits, patch 4: 2x2 tokens
    # the census: every block (depth 2) of every sym / asym run of the fixture (4 variants x 2
    # seeds) x 2 starts x 2 norms, and the figure shows the block where E rose most often
    census = pd.read_csv(out / "table4b_energy_every_block.csv")
    assert len(census) == 8 * 2 * 2 * 2 and set(census["block"]) == {0, 1}
    free = census[(census["model"] == "SymMixer") & (census["norm"] == "affine-free")]
    assert len(free) == 8 and (free["steps_energy_rose"] == 0).all()
    per_block = census[census["model"] != "SymMixer"].groupby(
        ["run_name", "block"], sort=False)["steps_energy_rose"].sum()
    if per_block.max() > 0:
        run_name, block = per_block.idxmax()
        shown = table[table["model"] != "SymMixer"]
        assert (shown["run_name"] == run_name).all() and (shown["block"] == block).all()
    summary = pd.read_csv(out / "table4c_energy_census.csv")
    assert summary["steps_energy_rose"].sum() == census["steps_energy_rose"].sum()


def test_energy_from_checkpoint_artifacts(figures, analysis_sweep):
    """Without the jobs' output dirs (another machine), the checkpoint and the config come
    from the runs' MLflow artifacts, and give the same energies."""
    from analysis.fig_energy import energy_traces

    tables = load_runs(analysis_sweep.uri, analysis_sweep.experiment, metrics=[])
    tables.runs["tags.output_dir"] = "/nonexistent"
    out, _ = figures
    local = pd.read_csv(out / "table4_energy.csv")
    _, summary = energy_traces(tables, dict(zip(local["run_name"], local["block"], strict=False)))
    assert list(summary["run_name"]) == list(local["run_name"])
    assert np.allclose(summary["E_end"], local["E_end"])


def test_select_sweep_by_name_and_id(analysis_sweep):
    store = analysis_sweep
    by_name = load_runs(store.uri, store.experiment, sweep=store.sweep_name, metrics=[])
    by_id = load_runs(store.uri, store.experiment, sweep=store.parent_run_id, metrics=[])
    assert sorted(by_name.runs["run_id"]) == sorted(by_id.runs["run_id"]) \
        == sorted(store.child_run_ids)
    assert set(by_name.runs["sweep"]) == {store.sweep_name}
    everything = load_runs(store.uri, store.experiment, metrics=["test_acc"])
    assert len(everything.runs) == 10 and len(everything.parents) == 1
    assert set(everything.epochs["metric"]) == {"test_acc"}
    assert set(everything.epochs["epoch"]) == {1, 2}
    with pytest.raises(NoRunsError, match="names no sweep parent run"):
        load_runs(store.uri, store.experiment, sweep="no_such_sweep", metrics=[])


def test_main_sweep_by_id(analysis_sweep, tmp_path, capsys):
    """make_figures.main (the CLI's entry point, in-process) with --sweep <parent run id>."""
    store = analysis_sweep
    common = ["--tracking-uri", store.uri, "--experiment", store.experiment, "--no-log"]
    assert main([*common, "--sweep", store.parent_run_id, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"10 runs from sweep '{store.parent_run_id}'" in out
    assert (tmp_path / "fig1_accuracy.png").exists() and (tmp_path / "runs.csv").exists()
    assert main([*common, "--sweep", "nope", "--out", str(tmp_path)]) == 2
    assert "names no sweep parent run" in capsys.readouterr().err


def test_empty_store_fails_clearly(tmp_path, monkeypatch, capsys):
    missing = f"sqlite:///{tmp_path / 'none.db'}"
    proc = make_figures_cli(["--tracking-uri", missing, "--experiment", "demo"], tmp_path)
    assert proc.returncode == 2
    assert "make_figures: error: no MLflow store at" in proc.stderr
    assert not (tmp_path / "none.db").exists()  # not created as a side effect
    # the default store (sqlite:///<cwd>/mlflow.db) when there is none
    monkeypatch.chdir(tmp_path)
    assert main(["--experiment", "demo"]) == 2
    assert str(tmp_path / "mlflow.db") in capsys.readouterr().err
    # a store without the experiment, and an experiment without runs
    uri = f"sqlite:///{tmp_path / 'empty.db'}"
    MlflowClient(uri).create_experiment("empty")
    with pytest.raises(NoRunsError, match=r"no experiment 'demo' at .*experiments there"):
        load_runs(uri, "demo")
    with pytest.raises(NoRunsError, match="has no runs"):
        load_runs(uri, "empty")


def test_n_iter_and_optuna_figures_from_logged_runs(tmp_path, monkeypatch):
    """Figures 5 and 6 from runs logged directly (no training): an n_iter grid, and an Optuna
    sweep whose study storage is gone (history and λ slice drawn from the child runs). Figure
    5's legend lies beside its axes, never over a point or an error bar."""
    from analysis import fig_n_iter

    figs = capture_figures(monkeypatch, fig_n_iter, save=True)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("synthetic")
    parent = client.create_run(exp, run_name="search", tags={
        "sweep": "true", "sweep_dir": str(tmp_path / "gone")}).info.run_id
    rng = np.random.default_rng(0)
    expected = {}
    for model in ("sym", "asym"):
        for n_iter in (1, 2, 3):
            for seed in (0, 1):
                acc = 80 + n_iter + (model == "asym") + rng.normal()
                expected.setdefault((model, n_iter), []).append(acc)
                rid = client.create_run(exp, run_name=f"{model}-it{n_iter}-s{seed}").info.run_id
                for k, v in {"model.name": model, "model.n_iter": n_iter, "seed": seed,
                             "model.sb_lambda": 1e-4, "model.depth": 2, "model.dim": 16}.items():
                    client.log_param(rid, k, v)
                client.log_metric(rid, "final_test_acc", acc, step=3)
                client.set_terminated(rid, "FINISHED")
    for trial in range(5):
        rid = client.create_run(exp, run_name=f"trial{trial}", tags={
            "mlflow.parentRunId": parent, "optuna_trial": str(trial)}).info.run_id
        for k, v in {"model.name": "asym", "model.sb_lambda": 3 * 10.0 ** -trial, "seed": 0,
                     "model.n_iter": 1, "objective": "test_acc"}.items():
            client.log_param(rid, k, v)
        client.log_metric(rid, "test_acc", 70 + trial, step=3)
        client.set_terminated(rid, "FINISHED" if trial != 3 else "KILLED")
    client.set_terminated(parent, "FINISHED")

    tables = load_runs(uri, "synthetic")
    drawn, skipped = make_figures(tables, tmp_path / "out")
    names = {d.name: d for d in drawn}
    assert {"fig5_n_iter", "fig6a_optuna_history", "fig6c_optuna_lambda_slice"} <= set(names)
    assert any(n == "fig6b_optuna_importances" and "could not be opened" in why
               for n, why in skipped)
    n_iter = names["fig5_n_iter"].tables["table5_n_iter"]
    from analysis.fig_n_iter import line_labels

    # a line per variant across n_iter, not a point-line per (variant, n_iter)
    assert len(set(line_labels(n_iter))) == n_iter["variant"].nunique() < len(n_iter)
    for (model, it), accs in expected.items():
        row = n_iter[(n_iter["model"] == model) & (n_iter["n_iter"] == it)
                     & (n_iter["λ"].isna() | (n_iter["λ"] == 1e-4))]
        assert row["acc_mean"].item() == pytest.approx(np.mean(accs))
    trials = names["fig6a_optuna_history"].tables["table6_optuna_trials"]
    assert list(trials["trial"]) == [0, 1, 2, 3, 4]
    assert trials.loc[3, "state"] == "PRUNED" and trials.loc[4, "test_acc"] == 74
    with Image.open(tmp_path / "out" / "fig5_n_iter.png") as img:
        assert img.size == (1480, 800)
    fig = figs["fig5_n_iter"]
    renderer = FigureCanvasAgg(fig).get_renderer()  # a closed figure keeps no canvas
    legends = fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    assert len(legends) == 1
    assert not any(lg.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))
                   for lg in legends for ax in fig.axes)


def test_trials_of_a_search_on_val_acc_keep_their_objective_column():
    """A study that selects on val_acc (every search now): the objective is the third column,
    once, and the figures are labelled with it (once, a clash of two val_acc columns dropped
    both and labelled them sb_lambda)."""
    from analysis.fig_optuna import trials_from_runs

    runs = pd.DataFrame({
        "tags.optuna_trial": ["0", "1"], "params.objective": ["val_acc", "val_acc"],
        "metrics.val_acc": [81.0, 83.0], "status": ["FINISHED", "KILLED"],
        "acc": [80.5, 82.0], "val_acc": [81.0, 83.0], "sb_lambda": [1e-3, 1e-5],
        "run_name": ["t0", "t1"]})
    trials = trials_from_runs(runs)
    assert list(trials.columns[:3]) == ["trial", "state", "val_acc"]
    assert list(trials.columns).count("val_acc") == 1
    assert list(trials["val_acc"]) == [81.0, 83.0]
    assert list(trials["test_acc_reported"]) == [80.5, 82.0]


def test_optuna_figures_from_the_study(tmp_path, monkeypatch):
    """With the study's journal in the sweep dir (as the Optuna sweeper leaves it), history,
    importances and the λ slice come from Optuna itself."""
    import optuna
    import yaml

    from analysis import fig_optuna

    figs = capture_figures(monkeypatch, fig_optuna, save=True)
    sweep_dir = tmp_path / "multirun" / "search"
    sweep_dir.mkdir(parents=True)
    storage_url = f"journal://{sweep_dir / 'optuna_journal.log'}"
    from tracking.optuna_storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="search", storage=open_storage(storage_url),
                                direction="maximize", sampler=optuna.samplers.RandomSampler(0))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("search")
    parent = client.create_run(exp, run_name="search", tags={
        "sweep": "true", "sweep_dir": str(sweep_dir)}).info.run_id
    for _ in range(6):
        trial = study.ask()
        sb_lambda = trial.suggest_float("model.sb_lambda", 1e-6, 1.0, log=True)
        depth = trial.suggest_categorical("model.depth", [2, 4])
        value = 80 - abs(np.log10(sb_lambda) + 3) + depth / 4
        study.tell(trial, value)
        rid = client.create_run(exp, run_name=f"asym-t{trial.number}", tags={
            "mlflow.parentRunId": parent, "optuna_trial": str(trial.number)}).info.run_id
        for k, v in {"model.name": "asym", "model.sb_lambda": sb_lambda, "model.depth": depth,
                     "objective": "test_acc", "seed": 0}.items():
            client.log_param(rid, k, v)
        client.log_metric(rid, "test_acc", value, step=3)
        client.set_terminated(rid, "FINISHED")
    pruned = study.ask()  # a seventh trial, pruned: in the history's table, not in the slice
    pruned.suggest_float("model.sb_lambda", 1e-6, 1.0, log=True)
    study.tell(pruned, state=optuna.trial.TrialState.PRUNED)
    (sweep_dir / "optimization_results.yaml").write_text(yaml.safe_dump(
        {"storage": storage_url, "study_name": "search"}))
    client.set_terminated(parent, "FINISHED")

    drawn, skipped = make_figures(load_runs(uri, "search", sweep="search"), tmp_path / "out")
    names = {d.name: d for d in drawn}
    assert {"fig6a_optuna_history", "fig6b_optuna_importances",
            "fig6c_optuna_lambda_slice"} <= set(names), skipped
    trials = names["fig6a_optuna_history"].tables["table6_optuna_trials"]
    assert len(trials) == 7 and trials["value"].max() == pytest.approx(study.best_value)
    assert {"params_model.sb_lambda", "params_model.depth", "duration_s"} <= set(trials)
    importances = names["fig6b_optuna_importances"].tables["table6b_optuna_importances"]
    assert set(importances["param"]) == {"model.sb_lambda", "model.depth"}
    assert importances["importance"].sum() == pytest.approx(1.0)
    # seeded: drawing again gives the same importances
    again, _ = make_figures(load_runs(uri, "search", sweep="search"), tmp_path / "again")
    again = {d.name: d for d in again}["fig6b_optuna_importances"]
    pd.testing.assert_frame_equal(again.tables["table6b_optuna_importances"], importances)
    for name in ("fig6a_optuna_history", "fig6b_optuna_importances", "fig6c_optuna_lambda_slice"):
        with Image.open(tmp_path / "out" / f"{name}.png") as img:
            assert img.size == (1400, 800)
        # every title lies inside its figure
        fig = figs[name]
        renderer = FigureCanvasAgg(fig).get_renderer()  # a closed figure keeps no canvas
        for text in [fig._suptitle, *(a.title for a in fig.axes)]:
            if text is not None and text.get_text():
                box = text.get_window_extent(renderer)
                assert fig.bbox.x0 - 1 <= box.x0 and box.x1 <= fig.bbox.x1 + 1, name
    # the λ slice is coloured by the most important other parameter
    slice_ax = figs["fig6c_optuna_lambda_slice"].axes[0]
    assert slice_ax.get_legend().get_title().get_text() == "model.depth"
    # a point per complete trial, and the title says how many of the study's trials that is
    assert sum(len(c.get_offsets()) for c in slice_ax.collections) == 6
    assert "6 complete of 7 trials" in slice_ax.get_title()
    # the trials ranked on the study's objective (test_acc here: an old study, said so)
    assert trials.loc[trials["value"].idxmax(), "rank"] == 1
    assert "test_acc_reported" in trials and "biased upwards" in " ".join(trials.attrs["notes"])


# --- selection on validation, statistics, reference lines, null band (issue 15) -------------
# Run tables built by hand (no training, no MLflow store): fast checks of the properties.

SHAPE = {"model.img_size": "8", "model.patch_size": "4", "model.token_ratio": "0.5",
         "model.channel_ratio": "4.0", "model.depth": "2", "model.dim": "16",
         "model.n_iter": "1", "data.name": "digits"}


def hand_runs(rows: list[dict]) -> pd.DataFrame:
    """A run table as load_runs returns it, from rows {model, lam, seed, acc[, val, n_test,
    params]}."""
    from analysis.load_runs import add_typed_columns

    table = []
    for i, r in enumerate(rows):
        row = {"run_id": f"r{i}", "run_name": f"r{i}", "status": "FINISHED",
               "params.model.name": r["model"], "params.model.sb_lambda": str(r.get("lam", 0.0)),
               "params.seed": str(r["seed"]), "metrics.final_test_acc": r["acc"],
               **{f"params.{k}": v for k, v in {**SHAPE, **r.get("params", {})}.items()}}
        if "val" in r:
            row["metrics.val_acc"] = r["val"]
        if "n_test" in r:
            row["metrics.n_test"] = r["n_test"]
        table.append(row)
    return add_typed_columns(pd.DataFrame(table))


def hand_tables(runs: pd.DataFrame, epochs: list[tuple] | None = None):
    from analysis.load_runs import RunTables

    return RunTables(runs=runs, epochs=pd.DataFrame(epochs or [], columns=[
        "run_id", "epoch", "metric", "value"]))


def capture_figures(monkeypatch, module, save: bool = False) -> dict:
    """Keep each figure ``module`` draws (name -> Figure), and write its files only when
    ``save``."""
    figs: dict = {}
    original = module.save_figure

    def keep(fig, out, name):
        figs[name] = fig
        return original(fig, out, name) if save else []
    monkeypatch.setattr(module, "save_figure", keep)
    return figs


def test_holm_against_a_hand_computed_example():
    from analysis.significance import holm

    # sorted: 0.005 x4 = 0.02, 0.01 x3 = 0.03, 0.03 x2 = 0.06, 0.04 x1 = 0.04 -> max so far 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # a NaN is no test: m = 2, and it stays NaN; the adjustment is capped at 1
    adj = holm([0.02, np.nan, 0.6])
    assert adj[0] == pytest.approx(0.04) and np.isnan(adj[1]) and adj[2] == pytest.approx(0.6)
    assert holm([0.5, 0.7]) == pytest.approx([1.0, 1.0])
    assert len(holm([])) == 0


def test_binomial_sd_of_the_test_set():
    from analysis.significance import binomial_sd

    # the figure quoted in SCIENCE.md: +-0.36 points at 85 % with 10 000 test images
    assert binomial_sd(85.0, 10_000) == pytest.approx(0.357, abs=5e-4)
    assert binomial_sd(50.0, 100) == pytest.approx(5.0)
    assert np.isnan(binomial_sd(85.0, np.nan))


def test_welch_table_holm_column_over_its_family():
    runs = hand_runs([{"model": m, "seed": s, "acc": a + s} for m, a in
                      (("vanilla", 80), ("sym", 74), ("para", 79.5)) for s in (0, 1, 2)]
                     + [{"model": "asym", "lam": lam, "seed": s, "acc": 77 + s + lam}
                        for lam in (0.0, 1.0) for s in (0, 1, 2)])
    table = welch_table(runs, "vanilla")
    assert len(table) == 4
    p = table["p"].to_numpy()
    order = np.argsort(p)
    expected = np.maximum.accumulate(np.minimum(1, (4 - np.arange(4)) * p[order]))
    assert table["p_holm"].to_numpy()[order] == pytest.approx(expected)
    assert (table["p_holm"] >= table["p"]).all()
    assert any("Holm" in n and "m = 4" in n for n in table.attrs["notes"])


def test_accuracy_table_has_val_and_test_and_the_test_sd():
    from analysis.fig_accuracy import accuracy_table
    from analysis.tables import to_markdown

    runs = hand_runs([{"model": m, "seed": s, "acc": a + s, "val": a + 1 + s, "n_test": 10_000}
                      for m, a in (("vanilla", 84), ("sym", 80)) for s in (0, 1)])
    table = accuracy_table(runs).set_index("model")
    assert table.loc["vanilla", "acc_mean"] == pytest.approx(84.5)
    assert table.loc["vanilla", "val_acc_mean"] == pytest.approx(85.5)
    assert table.loc["sym", "val_acc_std"] == pytest.approx(np.std([81, 82], ddof=1))
    assert table.loc["vanilla", "n_test"] == 10_000
    assert table.loc["vanilla", "test_sd"] == pytest.approx(
        100 * np.sqrt(0.845 * 0.155 / 10_000))
    md = to_markdown(accuracy_table(runs))
    assert "val_acc_mean" in md and "never used to select" in md and "±0.36" in md
    # an older store: no val_acc, no n_test: the columns say "–" and the notes say why
    old = hand_runs([{"model": m, "seed": s, "acc": 80.0 + s} for m in ("vanilla", "sym")
                     for s in (0, 1)])
    md = to_markdown(accuracy_table(old))
    assert md.splitlines()[2].endswith("| – | – | – | – |")
    assert "logged no val_acc" in md and "did not log n_test" in md


def lambda_runs(with_val: bool = True, vanilla: bool = True) -> pd.DataFrame:
    """AsymMixer at 3 lam, SymMixer and the vanilla Mixer, 2 seeds. The test accuracy peaks at
    lam 1e-2 but the validation accuracy at 1e-4: selection must follow the validation."""
    test = {1.0: 70.0, 1e-2: 79.0, 1e-4: 76.0, 0.0: 75.0}
    val = {1.0: 70.0, 1e-2: 74.0, 1e-4: 78.0, 0.0: 75.0}
    rows = [{"model": "asym", "lam": lam, "seed": s, "acc": test[lam] + s,
             **({"val": val[lam] + s} if with_val else {})} for lam in test for s in (0, 1)]
    rows += [{"model": "sym", "seed": s, "acc": 68.0 + s} for s in (0, 1)]
    if vanilla:
        rows += [{"model": "vanilla", "seed": s, "acc": 82.0 + s} for s in (0, 1)]
    return hand_runs(rows)


def test_lambda_figure_draws_sym_and_vanilla_references(monkeypatch, tmp_path):
    from analysis import fig_lambda

    figs = capture_figures(monkeypatch, fig_lambda)
    drawn = fig_lambda.draw(hand_tables(lambda_runs()), tmp_path)
    assert drawn.note == ""
    ax = figs[fig_lambda.NAME].axes[0]
    horizontal = {round(float(line.get_ydata()[0]), 6) for line in ax.lines
                  if len(set(line.get_ydata())) == 1 and list(line.get_xdata()) == [0, 1]}
    # the means of SymMixer (68.5), the vanilla Mixer (82.5) and AsymMixer lam = 0 (75.5)
    assert {68.5, 82.5, 75.5} <= horizontal
    labels = {t.get_text() for t in figs[fig_lambda.NAME].legends[0].get_texts()}
    assert {"SymMixer", "MLP-Mixer (vanilla)", "AsymMixer λ=0"} <= labels
    table = drawn.tables["table2_accuracy_vs_lambda"]
    assert table.loc[table["curve"] == "vanilla", "acc_mean"].item() == pytest.approx(82.5)
    # the best lam is chosen on the validation accuracy (1e-4), not on the test one (1e-2)
    best = drawn.tables["table2b_best_lambda"]
    assert best["selected_on"].item() == "val_acc" and best["λ"].item() == 1e-4
    assert best["test_acc_mean"].item() == pytest.approx(76.5)
    # without vanilla runs the figure says its reference is missing
    drawn = fig_lambda.draw(hand_tables(lambda_runs(vanilla=False)), tmp_path)
    assert drawn.note == "no MLP-Mixer (vanilla) runs in the selection: reference line missing"
    # runs without a validation split: nothing is selected, never the test-best lam
    best = fig_lambda.best_lambda_table(lambda_runs(with_val=False))
    assert best["selected_on"].item() == "none: no val_acc" and np.isnan(best["λ"].item())


def test_figures_never_average_configurations_or_search_trials():
    from analysis.fig_accuracy import accuracy_table
    from analysis.figure_result import Skipped
    from analysis.groups import replicates, varied

    runs = hand_runs([{"model": "vanilla", "seed": s, "acc": 80.0 + s + 10 * (init == "tied"),
                       "params": {"model.init": init, "trainer.device": f"cuda:{s}"}}
                      for init in ("default", "tied") for s in (0, 1)])
    # model.init tells the runs apart; the device does not change what is trained
    assert varied(runs) == ["params.model.init"]
    table = accuracy_table(runs)
    assert list(table["acc_mean"]) == [80.5, 90.5] and list(table["seeds"]) == [2, 2]
    trials = runs.assign(**{"tags.optuna_trial": ["0", "1", "2", "3"]})
    with pytest.raises(Skipped, match="trials of an Optuna search"):
        replicates(trials)


def test_vanilla_symmetry_null_band_and_epoch_0(monkeypatch, tmp_path):
    from analysis import fig_symmetry

    runs = hand_runs([{"model": "vanilla", "seed": s, "acc": 80.0} for s in (0, 1)])
    epochs = [(rid, e, f"symmetry/b{b}/{part}/{m}", 0.01 * e + (0.5 if m == "symfrac" else 0))
              for rid in runs["run_id"] for e in (0, 1, 2) for b in (0, 1)
              for part in ("token", "channel") for m in ("cos", "symfrac")]
    figs = capture_figures(monkeypatch, fig_symmetry)
    drawn = fig_symmetry.draw_vanilla(hand_tables(runs, epochs), tmp_path)
    table = drawn.tables["table3a_vanilla_symmetry"]
    assert set(table["epoch"]) == {0, 1, 2}
    # 8x8 px, patch 4: S = 4 tokens; C = 16: token h = 8, channel h = 64
    sd = {"token": 1 / np.sqrt(4 * 8), "channel": 1 / np.sqrt(16 * 64)}
    axes = figs[fig_symmetry.NAME_VANILLA].axes
    for ax, (measure, part) in zip(axes, [("cos", "token"), ("cos", "channel"),
                                         ("symfrac", "token"), ("symfrac", "channel")],
                                   strict=True):
        centre, half = (0.0, 2 * sd[part]) if measure == "cos" else (0.5, sd[part])
        rows = table[(table["measure"] == measure) & (table["part"] == part)]
        assert rows["null_lo"].to_numpy() == pytest.approx(centre - half)
        spans = [p.get_path().get_extents(p.get_transform() - ax.transData)
                 for p in ax.patches]
        assert any(b.y0 == pytest.approx(centre - half) and b.y1 == pytest.approx(centre + half)
                   for b in spans), (measure, part)
        assert min(min(line.get_xdata()) for line in ax.lines if len(line.get_xdata())) == 0


def test_titles_fit_the_figure():
    from analysis.style import fit_text, new_figure

    fig, ax = new_figure((4.0, 3.0))
    title = ax.set_title("a title far too long for a figure four inches wide, " * 2)
    size = fit_text(fig, title)
    renderer = fig.canvas.get_renderer()
    box = title.get_window_extent(renderer)
    assert size < 10.5 and box.x0 >= fig.bbox.x0 - 1 and box.x1 <= fig.bbox.x1 + 1


def test_load_runs_reads_val_acc_and_n_test(tmp_path):
    """val_acc (latest logged value) and n_test from MLflow; a run logged before validation
    splits existed still loads, with NaN."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("val")
    for i, has_val in enumerate((True, False)):
        rid = client.create_run(exp, run_name=f"r{i}").info.run_id
        client.log_param(rid, "model.name", "sym")
        client.log_param(rid, "objective", "val_acc" if has_val else "test_acc")
        client.log_metric(rid, "final_test_acc", 80.0 + i, step=2)
        if has_val:
            client.log_metric(rid, "val_acc", 70.0, step=1)
            client.log_metric(rid, "val_acc", 81.5, step=2)
            client.log_metric(rid, "n_test", 360, step=0)
        client.set_terminated(rid, "FINISHED")
    runs = load_runs(uri, "val", metrics=["val_acc"]).runs.set_index("run_name")
    assert runs.loc["r0", "val_acc"] == 81.5 and runs.loc["r0", "n_test"] == 360
    assert runs.loc["r0", "objective"] == "val_acc" and runs.loc["r0", "acc"] == 80.0
    assert np.isnan(runs.loc["r1", "val_acc"]) and np.isnan(runs.loc["r1", "n_test"])
