"""Figure 4: the Hopfield energy along the continuous dynamics of a trained SymMixer block
(never rises) and a trained AsymMixer block (may rise), from the runs' saved checkpoints.

A model is rebuilt from its run's logged ``model.*`` params only (keyword arguments of
``models.Mixer``; a config file is never instantiated) and loaded with
``torch.load(weights_only=True)`` (tensors and plain values only: a pickle that would run code
is refused, never unpickled) from a checkpoint that provably belongs to the run: its job's
output dir (the ``output_dir`` tag) when that dir's ``mlflow_run_id`` file and the checkpoint's
own ``run_id`` both name the run, else the run's ``checkpoint/checkpoint.pt`` artifact; either
must hold the run's config fingerprint (its ``config_fingerprint`` tag, where it has one). Each
refusal is logged in one line (logger ``analysis.fig_energy``) naming the run, the file and
why; the figure goes on with the other runs. ``models.energy.integrate`` then runs float64
Euler steps from random initial states of the block's shape (S tokens x C channels).
``table4b_energy_every_block`` checks every block of every finished sym / asym run (up to
``MAX_CENSUS_RUNS``); the figure then shows, per model, the block where E rose most often
(block 0 of one run when it never rose), so a rise anywhere is seen rather than hidden behind
block 0.
"""

from __future__ import annotations

import inspect
import logging
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import seaborn as sns
import torch

from analysis.figure_result import Drawn, Skipped
from analysis.groups import display_name, has_lambda, hopfield_models
from analysis.load_runs import RunTables
from analysis.style import PAIR, new_figure, save_figure
from tracking.run_store import RunStore

if TYPE_CHECKING:
    from models.energy import BlockWeights, EnergyTrace

log = logging.getLogger(__name__)

NAME = "fig4_energy"
CHECKPOINT = "checkpoint.pt"  # in a job's output dir (training/trainer.py)
CHECKPOINT_ARTIFACT = "checkpoint/checkpoint.pt"  # logged by sweep/task.py
RUN_ID_FILE = "mlflow_run_id"  # the job's run id, in its output dir (sweep/task.py)
FINGERPRINT_TAG = "config_fingerprint"  # the run's training-config hash (sweep/task.py)
DT = 1e-2
STEPS = 1000
N_INITS = 3
MAX_CANDIDATES = 5  # runs tried per model before giving up on a checkpoint
MAX_CENSUS_RUNS = 24  # runs checked block by block for table4b (~0.3 s per block and state)


class RefusedCheckpoint(ValueError):
    """A run's model could not be loaded and something of it was refused (its params, or each
    checkpoint it has); the message gives each refusal in one line."""


def _refusal(run: pd.Series, what: object, why: str) -> str:
    """One line: the run, what of it was refused (a file) and why (newlines folded, long error
    messages cut)."""
    return " ".join(f"run {run['run_name']} ({run['run_id']}): {what}: {why[:300]}".split())


def _mixer_kwargs(run: pd.Series) -> dict[str, object]:
    """The run's ``params.model.*`` as keyword arguments of models.Mixer, each parsed as the type
    of Mixer's default (not YAML: it reads '1e-05' as a string). ValueError naming a param that
    is not a Mixer argument or not of its type."""
    from models import Mixer

    defaults = {k: p.default for k, p in inspect.signature(Mixer.__init__).parameters.items()
                if p.kind is p.KEYWORD_ONLY}
    kwargs: dict[str, object] = {}
    for col, text in run.items():
        if not (isinstance(col, str) and col.startswith("params.model.")) \
                or not isinstance(text, str):
            continue  # NaN: a param of other runs
        key = col.removeprefix("params.model.")
        if key not in defaults:
            raise ValueError(f"model.{key} is not an argument of models.Mixer (valid: "
                             f"{', '.join(defaults)})")
        kind = type(defaults[key])
        try:
            if kind is bool:
                kwargs[key] = {"true": True, "false": False}[text.strip().lower()]
            else:
                kwargs[key] = kind(text)
        except (KeyError, ValueError):
            raise ValueError(f"model.{key}={text[:80]!r} is not a {kind.__name__}, as "
                             "models.Mixer takes it") from None
    if not kwargs:
        raise ValueError("there are none to rebuild the model from")
    return kwargs


def _load_weights(path: Path) -> dict:
    """The checkpoint at ``path``, loaded with weights_only=True. ValueError (one line) when it
    needs any object other than tensors and plain values (it is then not unpickled: that
    could run code) or is unreadable, or holds no 'model' state dict."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - corrupt files fail in many ways
        text = str(err)
        unsafe = re.search(r"GLOBAL ([\w.]+)", text) if "Weights only load failed" in text \
            else None
        if unsafe:
            raise ValueError(f"it needs the Python global {unsafe.group(1)}, not only tensors "
                             "and plain values; not unpickled, since that could run code") \
                from None
        lines = [ln for ln in text.split("Check the documentation")[0].splitlines() if ln.strip()]
        raise ValueError(f"unreadable ({type(err).__name__}: {(lines or [''])[-1][:200]})") \
            from None
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict) \
            or not all(isinstance(k, str) for k in state["model"]):
        raise ValueError("it holds no 'model' state dict (not written by training/trainer.py)")
    return state


def _owned_local_checkpoint(run: pd.Series) -> tuple[Path | None, str | None]:
    """(the checkpoint in the run's output dir, or None; why that dir is not the run's, or
    None). A tag alone proves nothing (a reused or copied dir, a hand-set tag): the dir's
    ``mlflow_run_id`` file (sweep/task.py writes it when the job starts) must name the run."""
    out_dir = run.get("tags.output_dir")
    if not isinstance(out_dir, str) or not (Path(out_dir) / CHECKPOINT).is_file():
        return None, None
    path = Path(out_dir) / CHECKPOINT
    try:
        owner = (Path(out_dir) / RUN_ID_FILE).read_text().strip()
    except OSError:
        return path, f"its dir has no readable {RUN_ID_FILE} file to show it is this run's"
    if owner != run["run_id"]:
        return path, f"its dir's {RUN_ID_FILE} file names run {owner[:40]!r}, not this run"
    return path, None


def _load_into(model: torch.nn.Module, path: Path, run: pd.Series, check_run_id: bool) -> None:
    """Load the checkpoint at ``path`` into ``model``. It must have been written by the run's
    configuration (its fingerprint, when the run has a ``config_fingerprint`` tag) and, with
    ``check_run_id``, by the run itself. ValueError / RuntimeError (one line) otherwise."""
    state = _load_weights(path)
    if check_run_id and state.get("run_id") != run["run_id"]:
        raise ValueError(f"the checkpoint was written by run {str(state.get('run_id'))[:40]!r}, "
                         "not this one")
    want, got = run.get(f"tags.{FINGERPRINT_TAG}"), str(state.get("fingerprint"))[:40]
    if isinstance(want, str) and got != want:
        raise ValueError(f"the checkpoint's config fingerprint {got!r} is not the run's "
                         f"({FINGERPRINT_TAG} tag {want!r})")
    model.load_state_dict({k.removeprefix("_orig_mod."): v for k, v in state["model"].items()})


def load_trained_model(store: RunStore, run: pd.Series, tmp: Path,
                       refusals: list[str] | None = None) -> torch.nn.Module:
    """Rebuild a run's model from its params and load its final checkpoint's weights (CPU, eval
    mode): from its output dir when that provably is the run's, else from its checkpoint
    artifact. Each refusal adds one line to ``refusals``. FileNotFoundError when the run has
    no checkpoint; RefusedCheckpoint when it cannot be rebuilt or each checkpoint it has was
    refused."""
    from models import Mixer

    refused: list[str] = []
    try:
        try:
            model = Mixer(**_mixer_kwargs(run))
        except ValueError as err:
            refused.append(_refusal(run, "its model.* params", str(err)))
            raise RefusedCheckpoint(refused[-1]) from None
        local, not_owned = _owned_local_checkpoint(run)
        if not_owned:
            refused.append(_refusal(run, local, not_owned))
        elif local is not None:
            try:
                _load_into(model, local, run, check_run_id=True)
                return model.eval()
            except (ValueError, RuntimeError) as err:
                refused.append(_refusal(run, local, str(err)))
        try:
            path = store.download_artifact(run["run_id"], CHECKPOINT_ARTIFACT, tmp)
        except Exception:  # noqa: BLE001 - artifact store unreachable: as if there were none
            path = None
        if path is not None:
            try:
                _load_into(model, path, run, check_run_id=False)  # the run's own record
                return model.eval()
            except (ValueError, RuntimeError) as err:
                refused.append(_refusal(run, f"its artifact {CHECKPOINT_ARTIFACT}",
                                        str(err)))
    finally:
        if refusals is not None:
            refusals.extend(refused)
    if refused:
        raise RefusedCheckpoint("; ".join(refused))
    raise FileNotFoundError(f"run {run['run_name']} has no checkpoint")


class _RunModels:
    """Trained models of runs for one figure: a run that failed is not tried again, and each
    refusal is reported once."""

    def __init__(self, store: RunStore, tmp: Path) -> None:
        self.store, self.tmp = store, tmp
        self.failed: set[str] = set()
        self.reported: set[str] = set()

    def load(self, run: pd.Series) -> torch.nn.Module | None:
        """The run's trained model; None when it has no usable checkpoint."""
        if run["run_id"] in self.failed:
            return None
        refusals: list[str] = []
        try:
            return load_trained_model(self.store, run, self.tmp, refusals)
        except (FileNotFoundError, RefusedCheckpoint):
            self.failed.add(run["run_id"])
            return None
        finally:
            for line in refusals:
                if line not in self.reported:
                    self.reported.add(line)
                    log.warning("%s", line)


@contextmanager
def _run_models(tables: RunTables, models: _RunModels | None) -> Iterator[_RunModels]:
    """``models``, or a fresh one over the tables' store (with its own download folder)."""
    if models is not None:
        yield models
        return
    with tempfile.TemporaryDirectory() as tmp:
        yield _RunModels(RunStore(tables.tracking_uri), Path(tmp))


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


def _integrate_runs(tables: RunTables, models: _RunModels, picks: dict[str, int],
                    traces: list[pd.DataFrame], rows: list[dict], missing: list[str]) -> None:
    from models.energy import block_weights

    for model_name in hopfield_models():  # the table's sym and asym
        cands = _pick(tables.runs, model_name)
        picked = cands[cands["run_name"].isin(list(picks))]
        model = run = None
        for _, cand in pd.concat([picked, cands.head(MAX_CANDIDATES)]).iterrows():
            model, run = models.load(cand), cand
            if model is not None:
                break
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


def energy_census(tables: RunTables, models: _RunModels | None = None) -> pd.DataFrame:
    """For every block of every finished SymMixer / AsymMixer run with a loadable checkpoint
    (at most ``MAX_CENSUS_RUNS``): Euler steps where E rose, over ``N_INITS`` random initial
    states of ``STEPS`` steps each, the largest single-step rise and the first time t at which
    E rose (NaN when it never did). One row per (run, block)."""
    from models.energy import block_weights

    runs = tables.runs[tables.runs["model"].isin(hopfield_models())
                       & (tables.runs["status"] == "FINISHED")]
    runs = runs.sort_values(["model", "sb_lambda", "seed"]).head(MAX_CENSUS_RUNS)
    rows = []
    with _one_thread(), _run_models(tables, models) as loader:
        for _, run in runs.iterrows():
            model = loader.load(run)
            if model is None:
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


def energy_traces(tables: RunTables, picks: dict[str, int] | None = None,
                  models: _RunModels | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trace, summary): energies along the dynamics of one block of one trained sym and one
    trained asym run; summary has E(0), E(T) and the number of Euler steps where E rose.
    ``picks`` (run name -> block) chooses the run and block per model; otherwise block 0 of
    the first finished run (for asym: of the smallest sb_lambda)."""
    traces, rows, missing = [], [], []
    with _one_thread(), _run_models(tables, models) as loader:
        _integrate_runs(tables, loader, picks or {}, traces, rows, missing)
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
    with _run_models(tables, None) as models:  # each run's checkpoint judged once
        census = energy_census(tables, models)
        trace, summary = energy_traces(tables, _worst_blocks(census), models)
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
