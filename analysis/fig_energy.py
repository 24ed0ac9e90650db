"""Figure 4: the Hopfield energy along the continuous dynamics of a trained SymMixer block
(never rises) and a trained AsymMixer block (may rise), from the runs' saved checkpoints.

A model is rebuilt from its Hydra config (``<output_dir>/.hydra/config.yaml``, else the run's
``config/config.yaml`` artifact, else its ``model.*`` params) and loaded from its checkpoint
(``<output_dir>/checkpoint.pt``, else the run's ``checkpoint/checkpoint.pt`` artifact; see
training/checkpoint.py). ``models.energy.integrate`` then runs float64 Euler steps from random
initial states of the block's shape (S tokens x C channels).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd
import seaborn as sns
import torch
import yaml
from mlflow.tracking import MlflowClient

from analysis.figure_result import Drawn, Skipped
from analysis.groups import display_name
from analysis.load_runs import RunTables
from analysis.style import PAIR, new_figure, save_figure

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
NAME = "fig4_energy"
DT = 1e-2
STEPS = 1000
N_INITS = 3
MAX_CANDIDATES = 5  # runs tried per model before giving up on a checkpoint


def _local_or_artifact(client: MlflowClient, run: pd.Series, local: str, artifact: str,
                       tmp: Path) -> Path | None:
    out_dir = run.get("tags.output_dir")
    if isinstance(out_dir, str) and (Path(out_dir) / local).exists():
        return Path(out_dir) / local
    try:
        folder, _, _ = artifact.rpartition("/")
        if not any(a.path == artifact for a in client.list_artifacts(run["run_id"], folder)):
            return None
        return Path(client.download_artifacts(run["run_id"], artifact, str(tmp)))
    except Exception:  # noqa: BLE001 - no such artifact / artifact store unreachable
        return None


def _model_from_params(run: pd.Series) -> torch.nn.Module:
    from models import Mixer

    kwargs = {}
    for col, value in run.items():
        if col.startswith("params.model.") and isinstance(value, str):
            kwargs[col.removeprefix("params.model.")] = yaml.safe_load(value)
    return Mixer(**kwargs)


def load_trained_model(client: MlflowClient, run: pd.Series, tmp: Path) -> torch.nn.Module:
    """Rebuild a run's model and load its final checkpoint's weights (CPU, eval mode)."""
    ckpt = _local_or_artifact(client, run, "checkpoint.pt", "checkpoint/checkpoint.pt", tmp)
    if ckpt is None:
        raise FileNotFoundError(f"run {run['run_name']} has no checkpoint")
    cfg_path = _local_or_artifact(client, run, ".hydra/config.yaml", "config/config.yaml", tmp)
    if cfg_path is not None:
        import hydra
        from omegaconf import OmegaConf

        model = hydra.utils.instantiate(OmegaConf.load(cfg_path).model)
    else:
        model = _model_from_params(run)
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    weights = {k.removeprefix("_orig_mod."): v for k, v in state["model"].items()}
    model.load_state_dict(weights)
    return model.eval()


def _pick(runs: pd.DataFrame, model: str) -> pd.DataFrame:
    """Candidate runs of ``model``: finished first; for asym the smallest lam first."""
    cand = runs[runs["model"] == model].copy()
    cand["_rank"] = (cand["status"] != "FINISHED").astype(int)
    by = ["_rank", "lam", "seed"] if model == "asym" else ["_rank", "seed"]
    return cand.sort_values(by)


def _integrate_runs(tables: RunTables, client: MlflowClient, tmp: Path, block: int,
                    traces: list[pd.DataFrame], rows: list[dict], missing: list[str]) -> None:
    from models.energy import block_weights, integrate

    for model_name in ("sym", "asym"):
        model = run = None
        for _, cand in _pick(tables.runs, model_name).head(MAX_CANDIDATES).iterrows():
            try:
                model, run = load_trained_model(client, cand, tmp), cand
                break
            except (FileNotFoundError, KeyError, RuntimeError, ValueError):
                continue
        if model is None:
            missing.append(model_name)
            continue
        weights = block_weights(model.blocks[block])
        shape = (weights.w_s.shape[1], weights.w_c.shape[1])  # (S, C)
        gen = torch.Generator().manual_seed(0)
        label = display_name(model_name, run["lam"])
        for init in range(N_INITS):
            x0 = torch.randn(shape, generator=gen, dtype=torch.float64)
            tr = integrate(x0, weights, dt=DT, steps=STEPS, record_every=10)
            traces.append(pd.DataFrame({"model": label, "run_name": run["run_name"],
                                        "init": init, "time": tr.times.numpy(),
                                        "energy": tr.energies.numpy()}))
            rows.append({"model": label, "run_name": run["run_name"], "block": block,
                         "init": init, "S": shape[0], "C": shape[1], "dt": DT,
                         "steps": STEPS, "E_start": float(tr.energies[0]),
                         "E_end": float(tr.energies[-1]),
                         "steps_energy_rose": tr.n_increases})


def energy_traces(tables: RunTables, block: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trace, summary): energies along the dynamics of ``block`` of one trained sym and one
    trained asym run; summary has E(0), E(T) and the number of Euler steps where E rose."""
    client = MlflowClient(tables.tracking_uri)
    traces, rows, missing = [], [], []
    threads = torch.get_num_threads()
    # tiny float64 matmuls: one thread is ~20x faster than several on a busy machine
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            _integrate_runs(tables, client, Path(tmp), block, traces, rows, missing)
    finally:
        torch.set_num_threads(threads)
    if missing == ["sym", "asym"]:
        raise Skipped("no SymMixer or AsymMixer run with a loadable checkpoint "
                      "(tracking.log_checkpoint=true or the job's output dir)")
    if missing:
        raise Skipped(f"no {' or '.join(missing)} run with a loadable checkpoint; the figure "
                      "compares a trained SymMixer block with a trained AsymMixer block")
    return pd.concat(traces, ignore_index=True), pd.DataFrame(rows)


def draw(tables: RunTables, out: Path) -> Drawn:
    """Two panels, SymMixer and AsymMixer: E(t) for a few random initial states."""
    trace, summary = energy_traces(tables)
    fig, axes = new_figure(PAIR, 1, 2)
    colors = sns.color_palette("colorblind", N_INITS)
    for ax, (label, part) in zip(axes, trace.groupby("model", sort=False), strict=False):
        for init, d in part.groupby("init"):
            ax.plot(d["time"], d["energy"], color=colors[init], lw=1.6,
                    label=f"initial state {init}")
        rose = summary[summary["model"] == label]["steps_energy_rose"].tolist()
        ax.set_title(f"{label}, block 0\n(run {part['run_name'].iloc[0]})")
        ax.text(0.97, 0.95, f"Euler steps where E rose: {rose} of {STEPS}",
                transform=ax.transAxes, ha="right", va="top", fontsize=8,
                bbox={"boxstyle": "round", "fc": "white", "ec": "0.7"})
        ax.set_xlabel(f"time t (dynamics units; Euler, dt = {DT:g})")
        ax.set_ylabel("energy E(x(t)) (a.u.)")
    axes[0].legend(loc="center right")
    fig.suptitle("Hopfield energy along dx/dt of a trained block: symmetric vs symmetry-broken")
    files = save_figure(fig, out, NAME)
    return Drawn(NAME, files, {"table4_energy": summary})
