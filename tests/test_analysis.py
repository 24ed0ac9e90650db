"""analysis/make_figures.py on a small real sweep (tests/conftest.py ``analysis_sweep``): the
figures exist at their size, the tables behind them hold the numbers MLflow holds, runs are
selected by sweep name and id, and an empty store fails clearly."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
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
            "fig4_energy": (1800, 760)}


def make_figures_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def figures(analysis_sweep, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The CLI run once, as a user runs it, over the fixture sweep."""
    out = tmp_path_factory.mktemp("figures")
    t0 = time.perf_counter()
    proc = make_figures_cli(["--tracking-uri", analysis_sweep.uri, "--experiment",
                             analysis_sweep.experiment, "--out", str(out)], analysis_sweep.workdir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "refused" not in proc.stdout, proc.stdout  # a healthy sweep's checkpoints all load
    print(f"sweep {analysis_sweep.seconds:.1f} s, make_figures {time.perf_counter() - t0:.1f} s")
    return out, proc


def child_runs_frame(store) -> pd.DataFrame:
    """The fixture's job runs, straight from MlflowClient (independent of analysis/)."""
    client = MlflowClient(store.uri)
    rows = []
    for rid in store.child_run_ids:
        run = client.get_run(rid)
        rows.append({"run_id": rid, "model": run.data.params["model.name"],
                     "sb_lambda": float(run.data.params["model.sb_lambda"]),
                     "acc": run.data.metrics["final_test_acc"]})
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
    for table in ("table1_accuracy", "table2_accuracy_vs_lambda", "table4_energy"):
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
    sym = table[table["model"] == "SymMixer"]
    # the theorem: the symmetric block's energy never rises along the dynamics
    assert (sym["steps_energy_rose"] == 0).all()
    assert (sym["E_end"] < sym["E_start"]).all()
    assert set(table["S"]) == {4} and set(table["C"]) == {16}  # 8x8 digits, patch 4: 2x2 tokens
    # the census: every block (depth 2) of every sym / asym run of the fixture (4 variants x 2
    # seeds), and the figure shows the block where E rose most often, if it rose anywhere
    census = pd.read_csv(out / "table4b_energy_every_block.csv")
    assert len(census) == 8 * 2 and set(census["block"]) == {0, 1}
    assert (census[census["model"] == "SymMixer"]["steps_energy_rose"] == 0).all()
    asym = census[census["model"] != "SymMixer"]
    if asym["steps_energy_rose"].max() > 0:
        worst = asym.loc[asym["steps_energy_rose"].idxmax()]
        shown = table[table["model"] != "SymMixer"]
        assert (shown["run_name"] == worst["run_name"]).all()
        assert (shown["block"] == worst["block"]).all()


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


def test_n_iter_and_optuna_figures_from_logged_runs(tmp_path):
    """Figures 5 and 6 from runs logged directly (no training): an n_iter grid, and an Optuna
    sweep whose study storage is gone (history and λ slice drawn from the child runs)."""
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
    for (model, it), accs in expected.items():
        row = n_iter[(n_iter["model"] == model) & (n_iter["n_iter"] == it)
                     & (n_iter["λ"].isna() | (n_iter["λ"] == 1e-4))]
        assert row["acc_mean"].item() == pytest.approx(np.mean(accs))
    trials = names["fig6a_optuna_history"].tables["table6_optuna_trials"]
    assert list(trials["trial"]) == [0, 1, 2, 3, 4]
    assert trials.loc[3, "state"] == "PRUNED" and trials.loc[4, "test_acc"] == 74
    with Image.open(tmp_path / "out" / "fig5_n_iter.png") as img:
        assert img.size == (1200, 800)


def test_optuna_figures_from_the_study(tmp_path):
    """With the study's journal in the sweep dir (as the Optuna sweeper leaves it), history,
    importances and the λ slice come from Optuna itself."""
    import optuna
    import yaml

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
    (sweep_dir / "optimization_results.yaml").write_text(yaml.safe_dump(
        {"storage": storage_url, "study_name": "search"}))
    client.set_terminated(parent, "FINISHED")

    drawn, skipped = make_figures(load_runs(uri, "search", sweep="search"), tmp_path / "out")
    names = {d.name: d for d in drawn}
    assert {"fig6a_optuna_history", "fig6b_optuna_importances",
            "fig6c_optuna_lambda_slice"} <= set(names), skipped
    trials = names["fig6a_optuna_history"].tables["table6_optuna_trials"]
    assert len(trials) == 6 and trials["value"].max() == pytest.approx(study.best_value)
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
