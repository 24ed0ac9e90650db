"""Figure 7 (the paper's figure 2b-c, after the authors' demo/demo_energymetaformer.ipynb): a
trained energy-based MetaFormer block (models/energy_metaformer.py, ``model=energy_metaformer``)
seen as a Hopfield network.

(b) Receptive fields: the rows of the token interaction W_s (h_s, S) of block 0, each drawn
    on the (H/p, W/p) grid of patches (with ``patch_size=1`` the image's pixels, as the
    notebook's 28 x 28 fields), the ``N_FIELDS`` rows of largest norm, each scaled to unit norm,
    on a diverging colour map centred at 0.
(c) Energy descent: E along the block's own discrete dynamics (every layer moves by
    -eta dE/dg, eta its trained ``energy_step``), ``STEPS`` updates from ``N_INITS`` random
    states of all three layers (entries 10 N(0, 1), as the notebook), float64, for every block
    of the run; the table counts the steps where E rose.

The run: the first finished run whose block wiring has the Hopfield relaxation (``relax``) and
a loadable checkpoint (rebuilt from its params and loaded as figure 4's, weights only).
"""

from __future__ import annotations

import copy
import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
import torch

from analysis.fig_energy import RefusedCheckpoint, load_trained_model
from analysis.figure_result import Drawn, Skipped
from analysis.groups import display_name
from analysis.load_runs import RunTables
from analysis.style import PAIR, new_figure, save_figure
from models import BLOCKS
from tracking.run_store import RunStore

NAME = "fig7_energy_metaformer"
N_FIELDS = 36  # receptive fields shown (a 6 x 6 grid)
N_INITS = 3
STEPS = 50
INIT_SCALE = 10.0  # the notebook's initial states: 10 N(0, 1) in every layer
MAX_CANDIDATES = 5


def _energy_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs whose block wiring relaxes a Hopfield energy (EnergyBlock), finished first."""
    col = "params.model.block"
    if runs.empty or col not in runs:
        return runs.iloc[0:0]
    mask = runs[col].map(lambda b: isinstance(b, str) and hasattr(BLOCKS.get(b), "relax"))
    cand = runs[mask.astype(bool)].copy()
    cand["_rank"] = (cand["status"] != "FINISHED").astype(int)
    return cand.sort_values(["_rank", "seed"])


def _trained(tables: RunTables) -> tuple[torch.nn.Module, pd.Series]:
    """The first candidate run's trained model (CPU, eval mode, float64) and its row."""
    cands = _energy_runs(tables.runs)
    if cands.empty:
        raise Skipped("no run of an energy-based MetaFormer (model=energy_metaformer)")
    refused = []
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(tables.tracking_uri)
        for _, run in cands.head(MAX_CANDIDATES).iterrows():
            try:
                return load_trained_model(store, run, Path(tmp)).double(), run
            except FileNotFoundError:
                continue
            except RefusedCheckpoint as err:
                refused.append(str(err))
    why = f" (refused: {'; '.join(refused)})" if refused else ""
    raise Skipped("no energy_metaformer run with a loadable checkpoint "
                  f"(tracking.log_checkpoint=true or the job's output dir){why}")


@torch.no_grad()
def energy_descent(block: torch.nn.Module, steps: int = STEPS, n_inits: int = N_INITS,
                   seed: int = 0) -> np.ndarray:
    """E (steps + 1, n_inits) along ``steps`` updates of ``block``'s dynamics at its own step
    size, from seeded random states of its three layers (float64, on a copy of the block)."""
    block = copy.deepcopy(block).double()
    w_s, w_c = block.weights()
    s, c = w_s.shape[1], w_c.shape[1]
    gen = torch.Generator().manual_seed(seed)
    rnd = lambda *shape: INIT_SCALE * torch.randn(  # noqa: E731
        n_inits, *shape, generator=gen, dtype=torch.float64)
    state = type(block.initial_state(torch.zeros(1, s, c, dtype=torch.float64)))(
        rnd(s, c), rnd(w_s.shape[0], c), rnd(s, w_c.shape[0]))
    _, energies = block.relax(state, steps)
    return energies.numpy()


def receptive_fields(block: torch.nn.Module, n: int = N_FIELDS) -> tuple[np.ndarray, int]:
    """(the ``n`` rows of W_s of largest norm, unit-normed, as (n, side, side) images, side);
    ValueError when S is not a square grid."""
    w_s = block.weights()[0].detach().double()
    side = math.isqrt(w_s.shape[1])
    if side * side != w_s.shape[1]:
        raise ValueError(f"S = {w_s.shape[1]} tokens are not a square grid of patches")
    norms = w_s.norm(dim=1)
    top = norms.argsort(descending=True)[:n]
    fields = w_s[top] / norms[top, None].clamp_min(1e-12)
    return fields.reshape(-1, side, side).numpy(), side


def _mosaic(fields: np.ndarray) -> np.ndarray:
    """(n, side, side) -> one image of a near-square grid with 1-pixel NaN gutters."""
    n, side, _ = fields.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    out = np.full((rows * (side + 1) - 1, cols * (side + 1) - 1), np.nan)
    for k in range(n):
        r, c = divmod(k, cols)
        out[r * (side + 1):r * (side + 1) + side, c * (side + 1):c * (side + 1) + side] = fields[k]
    return out


def draw(tables: RunTables, out: Path) -> Drawn:
    """(b) receptive fields of block 0's token units; (c) energy against update step."""
    model, run = _trained(tables)
    label = display_name(run["model"])
    rows, traces = [], []
    for b, blk in enumerate(model.blocks):
        energies = energy_descent(blk)
        rises = (np.diff(energies, axis=0) > 0).sum(axis=0)
        for i in range(energies.shape[1]):
            traces.append(energies[:, i])
            rows.append({"model": label, "run_name": run["run_name"], "block": b, "init": i,
                         "step_size": blk.energy_step, "steps": STEPS,
                         "E_start": float(energies[0, i]), "E_end": float(energies[-1, i]),
                         "steps_energy_rose": int(rises[i])})
    summary = pd.DataFrame(rows)
    fields, side = receptive_fields(model.blocks[0])

    fig, (ax_b, ax_c) = new_figure(PAIR, 1, 2)
    mosaic = _mosaic(fields)
    vmax = float(np.nanmax(np.abs(mosaic)))
    im = ax_b.imshow(mosaic, cmap="seismic", vmin=-vmax, vmax=vmax, interpolation="nearest")
    ax_b.set_axis_off()
    n_units = model.blocks[0].weights()[0].shape[0]
    ax_b.set_title(f"(b) receptive fields: top {len(fields)} of {n_units} token units\n"
                   f"(rows of W_s on the {side} x {side} patch grid, unit norm)")
    fig.colorbar(im, ax=ax_b, shrink=0.8)
    colors = sns.color_palette("colorblind", N_INITS)
    for i, trace in enumerate(traces[:N_INITS]):  # block 0
        ax_c.plot(np.arange(len(trace)), trace, lw=1.6, color=colors[i],
                  label=f"initial state {i}")
    eta = model.blocks[0].energy_step
    ax_c.set_xlabel(f"update k (each layer: state - {eta:g} dE/dg)")
    ax_c.set_ylabel("energy E (a.u.)")
    ax_c.set_title(f"(c) energy descent, block 0 of {len(model.blocks)}")
    rose = int(summary["steps_energy_rose"].sum())
    ax_c.text(0.97, 0.95, f"steps where E rose (all blocks): {rose} of {len(summary) * STEPS}",
              transform=ax_c.transAxes, ha="right", va="top", fontsize=8,
              bbox={"boxstyle": "round", "fc": "white", "ec": "0.7"})
    ax_c.legend(loc="center right")
    fig.suptitle(f"{label} as a Hopfield network (run {run['run_name']})")
    files = save_figure(fig, out, NAME)
    return Drawn(NAME, files, {"table7_energy_metaformer": summary})
