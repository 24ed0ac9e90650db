"""Figure 4: the Hopfield energy along the continuous dynamics of a trained SymMixer block
(never rises) and a trained AsymMixer block (may rise), from the runs' saved checkpoints.

A model is rebuilt from its Hydra config (``<output_dir>/.hydra/config.yaml``, else the run's
``config/config.yaml`` artifact, else its ``model.*`` params) and loaded from its checkpoint
(``<output_dir>/checkpoint.pt``, else the run's ``checkpoint/checkpoint.pt`` artifact; see
training/checkpoint.py). ``models.energy.integrate`` then runs float64 Euler steps from random
initial states of the block's shape (S tokens x C channels). ``table4b_energy_every_block``
checks every block of every finished sym / asym run (up to ``MAX_CENSUS_RUNS``); the figure
then shows, per model, the block where E rose most often (block 0 of one run when it never
rose), so a rise anywhere is seen rather than hidden behind block 0.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import seaborn as sns
import torch
import yaml

from analysis.figure_result import Drawn, Skipped
from analysis.groups import display_name, has_lambda, hopfield_models
from analysis.load_runs import RunTables
from analysis.style import PAIR, new_figure, save_figure
from tracking.run_store import RunStore

if TYPE_CHECKING:
    from models.energy import BlockWeights, EnergyTrace

NAME = "fig4_energy"
DT = 1e-2
STEPS = 1000
N_INITS = 3
MAX_CANDIDATES = 5  # runs tried per model before giving up on a checkpoint
MAX_CENSUS_RUNS = 24  # runs checked block by block for table4b (~0.3 s per block and state)


def _local_or_artifact(store: RunStore, run: pd.Series, local: str, artifact: str,
                       tmp: Path) -> Path | None:
    out_dir = run.get("tags.output_dir")
    if isinstance(out_dir, str) and (Path(out_dir) / local).exists():
        return Path(out_dir) / local
    try:
        return store.download_artifact(run["run_id"], artifact, tmp)
    except Exception:  # noqa: BLE001 - no such artifact / artifact store unreachable
        return None


def _model_from_params(run: pd.Series) -> torch.nn.Module:
    from models import Mixer

    kwargs = {}
    for col, value in run.items():
        if col.startswith("params.model.") and isinstance(value, str):
            kwargs[col.removeprefix("params.model.")] = yaml.safe_load(value)
    return Mixer(**kwargs)


def load_trained_model(store: RunStore, run: pd.Series, tmp: Path) -> torch.nn.Module:
    """Rebuild a run's model and load its final checkpoint's weights (CPU, eval mode)."""
    ckpt = _local_or_artifact(store, run, "checkpoint.pt", "checkpoint/checkpoint.pt", tmp)
    if ckpt is None:
        raise FileNotFoundError(f"run {run['run_name']} has no checkpoint")
    cfg_path = _local_or_artifact(store, run, ".hydra/config.yaml", "config/config.yaml", tmp)
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


@contextmanager
def _one_thread() -> Iterator[None]:
    """Torch on one thread meanwhile: for these tiny float64 matmuls one thread is ~20x faster
    than several on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _trajectories(weights: BlockWeights, record_every: int) -> list[EnergyTrace]:
    """``N_INITS`` Euler integrations (dt ``DT``, ``STEPS`` steps) of one block from the same
    seeded random initial states (S, C) every time, so any two calls agree."""
    from models.energy import integrate

    shape = (weights.w_s.shape[1], weights.w_c.shape[1])  # (S, C)
    gen = torch.Generator().manual_seed(0)
    return [integrate(torch.randn(shape, generator=gen, dtype=torch.float64), weights, dt=DT,
                      steps=STEPS, record_every=record_every) for _ in range(N_INITS)]


def _pick(runs: pd.DataFrame, model: str) -> pd.DataFrame:
    """Candidate runs of ``model``: finished first; for asym the smallest sb_lambda first."""
    cand = runs[runs["model"] == model].copy()
    cand["_rank"] = (cand["status"] != "FINISHED").astype(int)
    by = ["_rank", "sb_lambda", "seed"] if has_lambda(model) else ["_rank", "seed"]
    return cand.sort_values(by)


def _integrate_runs(tables: RunTables, store: RunStore, tmp: Path,
                    picks: dict[str, int], traces: list[pd.DataFrame], rows: list[dict],
                    missing: list[str]) -> None:
    from models.energy import block_weights

    for model_name in hopfield_models():  # the table's sym and asym
        cands = _pick(tables.runs, model_name)
        picked = cands[cands["run_name"].isin(list(picks))]
        model = run = None
        for _, cand in pd.concat([picked, cands.head(MAX_CANDIDATES)]).iterrows():
            try:
                model, run = load_trained_model(store, cand, tmp), cand
                break
            except (FileNotFoundError, KeyError, RuntimeError, ValueError):
                continue
        if model is None:
            missing.append(model_name)
            continue
        block = picks.get(run["run_name"], 0)
        weights = block_weights(model.blocks[block])
        shape = (weights.w_s.shape[1], weights.w_c.shape[1])  # (S, C)
        label = display_name(model_name, run["sb_lambda"])
        for init, tr in enumerate(_trajectories(weights, record_every=10)):
            traces.append(pd.DataFrame({"model": label, "run_name": run["run_name"],
                                        "block": block, "init": init,
                                        "time": tr.times.numpy(),
                                        "energy": tr.energies.numpy()}))
            rows.append({"model": label, "run_name": run["run_name"], "block": block,
                         "init": init, "S": shape[0], "C": shape[1], "dt": DT,
                         "steps": STEPS, "E_start": float(tr.energies[0]),
                         "E_end": float(tr.energies[-1]),
                         "steps_energy_rose": tr.n_increases})


def energy_census(tables: RunTables) -> pd.DataFrame:
    """For every block of every finished SymMixer / AsymMixer run with a loadable checkpoint
    (at most ``MAX_CENSUS_RUNS``): Euler steps where E rose, over ``N_INITS`` random initial
    states of ``STEPS`` steps each, the largest single-step rise and the first time t at which
    E rose (NaN when it never did). One row per (run, block)."""
    from models.energy import block_weights

    store = RunStore(tables.tracking_uri)
    runs = tables.runs[tables.runs["model"].isin(hopfield_models())
                       & (tables.runs["status"] == "FINISHED")]
    runs = runs.sort_values(["model", "sb_lambda", "seed"]).head(MAX_CENSUS_RUNS)
    rows = []
    with _one_thread(), tempfile.TemporaryDirectory() as tmp:
        for _, run in runs.iterrows():
            try:
                model = load_trained_model(store, run, Path(tmp))
            except (FileNotFoundError, KeyError, RuntimeError, ValueError):
                continue
            for b, blk in enumerate(model.blocks):
                trs = _trajectories(block_weights(blk), record_every=1)  # every step
                rises = [tr.energies.diff() for tr in trs]
                first = [float(tr.times[1:][d > 0][0]) for tr, d in zip(trs, rises, strict=True)
                         if (d > 0).any()]
                rows.append({"model": display_name(run["model"], run["sb_lambda"]),
                             "kind": run["model"], "run_name": run["run_name"],
                             "seed": run["seed"], "block": b,
                             "states": N_INITS, "steps": STEPS * N_INITS,
                             "steps_energy_rose": sum(tr.n_increases for tr in trs),
                             "states_with_a_rise": sum(tr.n_increases > 0 for tr in trs),
                             "largest_rise": max(0.0, *(float(d.max()) for d in rises)),
                             "first_rise_t": min(first, default=float("nan"))})
    return pd.DataFrame(rows)


def energy_traces(tables: RunTables, picks: dict[str, int] | None = None
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trace, summary): energies along the dynamics of one block of one trained sym and one
    trained asym run; summary has E(0), E(T) and the number of Euler steps where E rose.
    ``picks`` (run name -> block) chooses the run and block per model; otherwise block 0 of
    the first finished run (for asym: of the smallest sb_lambda)."""
    store = RunStore(tables.tracking_uri)
    traces, rows, missing = [], [], []
    with _one_thread(), tempfile.TemporaryDirectory() as tmp:
        _integrate_runs(tables, store, Path(tmp), picks or {}, traces, rows, missing)
    if missing == hopfield_models():
        raise Skipped("no SymMixer or AsymMixer run with a loadable checkpoint "
                      "(tracking.log_checkpoint=true or the job's output dir)")
    if missing:
        raise Skipped(f"no {' or '.join(missing)} run with a loadable checkpoint; the figure "
                      "compares a trained SymMixer block with a trained AsymMixer block")
    return pd.concat(traces, ignore_index=True), pd.DataFrame(rows)


def _worst_blocks(census: pd.DataFrame) -> dict[str, int]:
    """Per model (sym, asym), the (run, block) of the census where E rose most often: the
    block the figure shows (none for a model where E never rose: block 0 of its first run)."""
    if census.empty:
        return {}
    rose = census[census["steps_energy_rose"] > 0]
    worst = rose.sort_values("steps_energy_rose", ascending=False, kind="stable")
    worst = worst.drop_duplicates("kind")
    return dict(zip(worst["run_name"], worst["block"], strict=True))


def draw(tables: RunTables, out: Path) -> Drawn:
    """Two panels, SymMixer and AsymMixer: E(t) for a few random initial states, of the block
    where the census (every block of every run) saw E rise most often, else block 0."""
    census = energy_census(tables)
    trace, summary = energy_traces(tables, _worst_blocks(census))
    fig, axes = new_figure(PAIR, 1, 2)
    colors = sns.color_palette("colorblind", N_INITS)
    for ax, (label, part) in zip(axes, trace.groupby("model", sort=False), strict=False):
        for init, d in part.groupby("init"):
            ax.plot(d["time"], d["energy"], color=colors[init], lw=1.6,
                    label=f"initial state {init}")
        rose = summary[summary["model"] == label]["steps_energy_rose"].tolist()
        ax.set_title(f"{label}, block {part['block'].iloc[0]}\n"
                     f"(run {part['run_name'].iloc[0]})")
        ax.text(0.97, 0.95, f"Euler steps where E rose: {rose} of {STEPS}",
                transform=ax.transAxes, ha="right", va="top", fontsize=8,
                bbox={"boxstyle": "round", "fc": "white", "ec": "0.7"})
        ax.set_xlabel(f"time t (dynamics units; Euler, dt = {DT:g})")
        ax.set_ylabel("energy E(x(t)) (a.u.)")
    axes[0].legend(loc="center right")
    fig.suptitle("Hopfield energy along dx/dt of a trained block: symmetric vs symmetry-broken")
    files = save_figure(fig, out, NAME)
    tables_out = {"table4_energy": summary}
    if not census.empty:
        tables_out["table4b_energy_every_block"] = census
    return Drawn(NAME, files, tables_out)
