"""Figure 4: the Hopfield energy along the continuous dynamics of trained parallel blocks,
SymMixer (never rises for the affine-free block: the theorem), AsymMixer (may rise) and,
where the runs hold one, ParaMixer (read as W = W1, V = W2 - W1^T: the negative control),
from the runs' saved checkpoints.

Each block is integrated (``models.energy.integrate``, float64 Euler, dt ``DT``, ``STEPS``
steps) in four settings: two **norm kinds**, ``affine-free`` (the derivation's block, where
the theorem holds) and ``affine`` (the block with its trained LayerNorm gain and bias, the
block the network runs; energy defined in models/energy.py), times two **start kinds**,
``gaussian`` (``N_INITS`` seeded N(0, 1) states of the block's (S, C) shape) and ``real``
(the states the trained network feeds that block for the first ``N_INITS`` test images of
the run's dataset: patch embeddings after the blocks before it). A step counts as a rise
when E(x_{t+1}) > E(x_t) + ``RISE_RTOL`` |E(x_t)| (a margin above float64 rounding, far
below a rise of 0.3 on 25 000). For blocks with V the same is counted for the authors'
pseudo-energy (their demo notebook).

Tables: ``table4b_energy_every_block``, the census: one row per (run, block, start kind, norm
kind) for every block of up to ``MAX_CENSUS_RUNS`` finished runs of the energy models (taken
in turn from each model), with the steps where E (and the pseudo-energy) rose, the largest
single-step rise against the energy's scale and the first time E rose;
``table4c_energy_census``, the same summed per (model, start kind, norm kind);
``table4_energy``, one row per trajectory drawn. The figure shows per model the block
where E rose at the most steps over the four settings (block 0 of its first run when it
never rose): top, E(t); bottom, the change of E per Euler step on a symmetric-log axis, so
a rise of 0.3 on a scale of 25 000 stands out above zero.

A model is rebuilt from its run's logged ``model.*`` params only (keyword arguments of
``models.Mixer``; a config file is never instantiated) and loaded with
``torch.load(weights_only=True)`` (tensors and plain values only: a pickle that would run code
is refused, never unpickled) from a checkpoint that provably belongs to the run: its job's
output dir (the ``output_dir`` tag) when that dir's ``mlflow_run_id`` file and the checkpoint's
own ``run_id`` both name the run, else the run's ``checkpoint/checkpoint.pt`` artifact; either
must hold the run's config fingerprint (its ``config_fingerprint`` tag, where it has one). Each
refusal is logged in one line (logger ``analysis.fig_energy``) naming the run, the file and
why; the figure goes on with the other runs. The test images come from ``data.load_dataset``
with the run's logged ``data.*`` params; where they cannot be loaded, the run's real starts
are left out with one logged line.
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

import numpy as np
import pandas as pd
import torch

from analysis.figure_result import Drawn, Skipped
from analysis.groups import display_name, has_lambda, hopfield_models, variant_sort_key
from analysis.load_runs import RunTables
from analysis.style import new_figure, save_figure
from models import VARIANTS
from tracking.run_store import RunStore

if TYPE_CHECKING:
    from models.energy import EnergyTrace

log = logging.getLogger(__name__)

NAME = "fig4_energy"
CHECKPOINT = "checkpoint.pt"  # in a job's output dir (training/trainer.py)
CHECKPOINT_ARTIFACT = "checkpoint/checkpoint.pt"  # logged by sweep/task.py
RUN_ID_FILE = "mlflow_run_id"  # the job's run id, in its output dir (sweep/task.py)
FINGERPRINT_TAG = "config_fingerprint"  # the run's training-config hash (sweep/task.py)
DT = 1e-2
STEPS = 1000
N_INITS = 3  # initial states per start kind
STARTS = ("gaussian", "real")
NORMS = ("affine-free", "affine")
RISE_RTOL = 1e-12  # a rise: dE > RISE_RTOL |E| (float64 rounding of E is ~1e-15 |E|)
MAX_CANDIDATES = 5  # runs tried per model before giving up on a checkpoint
MAX_CENSUS_RUNS = 12  # runs checked block by block (4 settings x 2 N_INITS states per block)
SIZE = (11.0, 6.4)  # inches: 2 rows x one column per model, 2200 x 1280 px
START_COLORS = {"gaussian": "#0173b2", "real": "#d55e00"}
NORM_STYLES = {"affine-free": "-", "affine": "--"}


def energy_models() -> list[str]:
    """The table's models whose blocks have an energy (parallel wiring: sym, asym, para), in
    order. sym and asym (``hopfield_models``) are the figure's comparison; the others are
    drawn when their runs exist."""
    return [v.name for v in VARIANTS.values() if v.has_energy]


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
    """Trained models of runs for one figure: a run that failed is not tried again, each
    refusal is reported once, test images are loaded once per dataset, and each block's
    trajectories are integrated once."""

    def __init__(self, store: RunStore, tmp: Path) -> None:
        self.store, self.tmp = store, tmp
        self.failed: set[str] = set()
        self.reported: set[str] = set()
        self.images: dict[tuple, torch.Tensor | str] = {}
        self.traces: dict[tuple[str, int], dict[tuple[str, str], EnergyTrace]] = {}

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
                self.warn(line)

    def warn(self, line: str) -> None:
        if line not in self.reported:
            self.reported.add(line)
            log.warning("%s", line)

    def test_images(self, run: pd.Series) -> torch.Tensor | None:
        """The first ``N_INITS`` test images of the run's dataset, normalised as the network
        sees them (B, channels, H, W); None (and one logged line) when they cannot be loaded."""
        def param(key: str) -> str | None:
            value = run.get(f"params.data.{key}")
            return value if isinstance(value, str) and value not in ("None", "") else None

        kwargs = {"name": param("name"), "root": param("root"), "cache_dir": param("cache_dir"),
                  "image_size": param("image_size"), "eval_crop_pct": param("eval_crop_pct")}
        key = tuple(kwargs.values())
        if key not in self.images:
            self.images[key] = _load_test_images(kwargs)
        images = self.images[key]
        if isinstance(images, str):
            self.warn(_refusal(run, "its test images (real starts left out)", images))
            return None
        return images


def _load_test_images(kwargs: dict[str, str | None]) -> torch.Tensor | str:
    """The first ``N_INITS`` normalised test images of ``data.load_dataset(**kwargs)`` (the
    run's data.* params as text), or why they cannot be had."""
    from data import DatasetError, load_dataset, normalize

    if kwargs["name"] is None:
        return "the run logged no data.name"
    try:
        size = None if kwargs["image_size"] is None else int(kwargs["image_size"])
        # the test images as the run evaluated them (timm's resize + centre crop, if it did)
        crop = {} if kwargs["eval_crop_pct"] is None \
            else {"eval_crop_pct": float(kwargs["eval_crop_pct"])}
        data = load_dataset(kwargs["name"], root=kwargs["root"], image_size=size,
                            cache_dir=kwargs["cache_dir"], max_test=N_INITS, **crop)
    except (DatasetError, ValueError, TypeError, OSError) as err:
        return f"{type(err).__name__}: {err}"
    return normalize(data.test_x[:N_INITS], data.mean, data.std)


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
    """Torch on one thread meanwhile: for these small float64 matmuls one thread is faster
    than several on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _start_states(model: torch.nn.Module, block: int, shape: tuple[int, int],
                  images: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Initial states (N_INITS, S, C) in float64 per start kind: seeded Gaussian ones (the
    same for every block and call) and, given ``images``, the network's states at ``block``."""
    from models.energy import block_inputs

    gen = torch.Generator().manual_seed(0)
    starts = {"gaussian": torch.randn((N_INITS, *shape), generator=gen, dtype=torch.float64)}
    if images is not None:
        real = block_inputs(model, images, block).to(torch.float64)
        if tuple(real.shape[-2:]) != shape:
            raise ValueError(f"the test images give states {tuple(real.shape[-2:])}, the "
                             f"block's are {shape}")
        starts["real"] = real
    return starts


def _block_traces(loader: _RunModels, run: pd.Series, model: torch.nn.Module, block: int
                  ) -> dict[tuple[str, str], EnergyTrace]:
    """(start kind, norm kind) -> the EnergyTrace of the batch of its initial states (energies
    recorded every step), for one block of a trained model; computed once per loader."""
    from models.energy import block_weights, integrate

    key = (run["run_id"], block)
    if key not in loader.traces:
        blk = model.blocks[block]
        images = loader.test_images(run)
        shape = block_weights(blk).shape
        try:
            starts = _start_states(model, block, shape, images)
        except (RuntimeError, ValueError) as err:  # images of another size than the model's
            loader.warn(_refusal(run, "its test images (real starts left out)", str(err)))
            starts = _start_states(model, block, shape, None)
        out = {}
        for norm in NORMS:
            weights = block_weights(blk, affine=norm == "affine")
            x0 = torch.cat(list(starts.values()))
            trace = integrate(x0, weights, dt=DT, steps=STEPS, record_every=1,
                              rtol=RISE_RTOL)
            for i, start in enumerate(starts):
                out[(start, norm)] = trace.subset(slice(i * N_INITS, (i + 1) * N_INITS))
        loader.traces[key] = out
    return loader.traces[key]


def _rises(energies: torch.Tensor) -> torch.Tensor:
    """(T - 1, N) bool: the steps where E rose (the rule of ``integrate``, ``RISE_RTOL``)."""
    return energies.diff(dim=0) > RISE_RTOL * energies[:-1].abs()


def _census_rows(run: pd.Series, block: int, traces: dict[tuple[str, str], EnergyTrace]
                 ) -> list[dict]:
    rows = []
    for (start, norm), tr in traces.items():
        rose = _rises(tr.energies)
        d = tr.energies.diff(dim=0)
        rose_any = rose.any(dim=0)
        first = [float(tr.times[1:][rose[:, i]][0]) for i in range(rose.shape[1])
                 if rose_any[i]]
        pseudo = tr.energies if tr.pseudo_energies is None else tr.pseudo_energies
        rows.append({"model": display_name(run["model"], run["sb_lambda"]),
                     "kind": run["model"], "sb_lambda": run["sb_lambda"],
                     "run_name": run["run_name"], "seed": run["seed"],
                     "block": block, "start": start, "norm": norm,
                     "states": rose.shape[1], "steps": rose.numel(),
                     "steps_energy_rose": int(rose.sum()),
                     "states_with_a_rise": int(rose_any.sum()),
                     "largest_rise": max(0.0, float(d.max())),
                     "E_scale": float(tr.energies[0].abs().mean()),
                     "first_rise_t": min(first, default=float("nan")),
                     "steps_pseudo_energy_rose": int(_rises(pseudo).sum())})
    return rows


def _census_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Up to ``MAX_CENSUS_RUNS`` finished runs of the energy models, taken in turn from each
    model (sym, asym, para), each model's by seed then sb_lambda (every lam of seed 0 first)."""
    runs = runs[runs["model"].isin(energy_models()) & (runs["status"] == "FINISHED")]
    runs = runs.sort_values(["seed", "sb_lambda", "run_name"])
    order = {m: i for i, m in enumerate(energy_models())}
    runs = runs.assign(_turn=runs.groupby("model").cumcount(),
                       _order=runs["model"].map(order))
    return runs.sort_values(["_turn", "_order"], kind="stable").head(MAX_CENSUS_RUNS)


def energy_census(tables: RunTables, models: _RunModels | None = None) -> pd.DataFrame:
    """Every block of up to ``MAX_CENSUS_RUNS`` finished SymMixer / AsymMixer / ParaMixer runs
    with a loadable checkpoint, in each (start kind, norm kind): Euler steps where E (and the
    pseudo-energy) rose over ``N_INITS`` states of ``STEPS`` steps, the largest single-step
    rise, the energy's scale mean |E(0)| and the first time t at which E rose (NaN when it
    never did). One row per (run, block, start, norm), ordered by model."""
    rows = []
    with _one_thread(), _run_models(tables, models) as loader:
        for _, run in _census_runs(tables.runs).iterrows():
            model = loader.load(run)
            if model is None:
                continue
            for b in range(len(model.blocks)):
                try:
                    traces = _block_traces(loader, run, model, b)
                except ValueError as err:  # a block the energy does not describe
                    loader.warn(_refusal(run, f"block {b}", str(err)))
                    break
                rows += _census_rows(run, b, traces)
    census = pd.DataFrame(rows)
    if census.empty:
        return census
    # the paper's order: SymMixer, AsymMixer from large to small sb_lambda, ParaMixer
    rank = [variant_sort_key(m, lam) for m, lam in zip(census["kind"], census["sb_lambda"],
                                                       strict=True)]
    census = census.assign(_rank=rank).sort_values(["_rank", "run_name", "block"],
                                                   kind="stable", ignore_index=True)
    return census.drop(columns="_rank")


def census_summary(census: pd.DataFrame) -> pd.DataFrame:
    """The census summed per (model, start kind, norm kind): runs, blocks, trajectories, steps,
    trajectories and steps where E rose (and %), the largest rise and the pseudo-energy's
    rises."""
    if census.empty:
        return census
    g = census.groupby(["model", "kind", "start", "norm"], sort=False)
    out = g.agg(runs=("run_name", "nunique"), blocks=("block", "size"),
                trajectories=("states", "sum"), steps=("steps", "sum"),
                trajectories_with_a_rise=("states_with_a_rise", "sum"),
                steps_energy_rose=("steps_energy_rose", "sum"),
                largest_rise=("largest_rise", "max"), E_scale=("E_scale", "mean"),
                steps_pseudo_energy_rose=("steps_pseudo_energy_rose", "sum")).reset_index()
    out.insert(out.columns.get_loc("steps_energy_rose") + 1, "pct_steps_rose",
               100.0 * out["steps_energy_rose"] / out["steps"])
    return out


def _pick(runs: pd.DataFrame, model: str) -> pd.DataFrame:
    """Candidate runs of ``model``: finished first; for asym the smallest sb_lambda first."""
    cand = runs[runs["model"] == model].copy()
    cand["_rank"] = (cand["status"] != "FINISHED").astype(int)
    by = ["_rank", "sb_lambda", "seed"] if has_lambda(model) else ["_rank", "seed"]
    return cand.sort_values(by)


def _integrate_runs(tables: RunTables, loader: _RunModels, picks: dict[str, int],
                    traces: list[pd.DataFrame], rows: list[dict], missing: list[str]) -> None:
    for model_name in energy_models():
        cands = _pick(tables.runs, model_name)
        picked = cands[cands["run_name"].isin(list(picks))]
        model = run = None
        for _, cand in pd.concat([picked, cands.head(MAX_CANDIDATES)]).iterrows():
            model, run = loader.load(cand), cand
            if model is not None:
                break
        if model is None:
            missing.append(model_name)
            continue
        block = picks.get(run["run_name"], 0)
        try:
            block_traces = _block_traces(loader, run, model, block)
        except ValueError as err:
            loader.warn(_refusal(run, f"block {block}", str(err)))
            missing.append(model_name)
            continue
        label = display_name(model_name, run["sb_lambda"])
        for (start, norm), tr in block_traces.items():
            energies = tr.energies.numpy()
            steps_d = np.vstack([np.full((1, energies.shape[1]), np.nan),
                                 np.diff(energies, axis=0)])
            rose = _rises(tr.energies)
            pseudo = tr.energies if tr.pseudo_energies is None else tr.pseudo_energies
            p_rose = _rises(pseudo)
            s, c = tr.final_state.shape[-2:]
            for init in range(energies.shape[1]):
                traces.append(pd.DataFrame({
                    "model": label, "kind": model_name, "run_name": run["run_name"],
                    "block": block, "start": start, "norm": norm, "init": init,
                    "time": tr.times.numpy(), "energy": energies[:, init],
                    "dE": steps_d[:, init]}))
                rows.append({"model": label, "run_name": run["run_name"], "block": block,
                             "start": start, "norm": norm, "init": init, "S": s, "C": c,
                             "dt": DT, "steps": STEPS, "E_start": float(energies[0, init]),
                             "E_end": float(energies[-1, init]),
                             "steps_energy_rose": int(rose[:, init].sum()),
                             "largest_rise": max(0.0, float(np.nanmax(steps_d[:, init]))),
                             "steps_pseudo_energy_rose": int(p_rose[:, init].sum())})


def energy_traces(tables: RunTables, picks: dict[str, int] | None = None,
                  models: _RunModels | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trace, summary): E along the dynamics (every step, and its change per step ``dE``) of
    one block of one trained run per energy model (sym and asym required, para when it has
    one), in each (start kind, norm kind); summary has per trajectory E(0), E(T), the number
    of Euler steps where E (and the pseudo-energy) rose and the largest rise. ``picks`` (run
    name -> block) chooses the run and block per model; otherwise block 0 of the first
    finished run (for asym: of the smallest sb_lambda)."""
    traces, rows, missing = [], [], []
    with _one_thread(), _run_models(tables, models) as loader:
        _integrate_runs(tables, loader, picks or {}, traces, rows, missing)
    required = [m for m in hopfield_models() if m in missing]
    if required == hopfield_models():
        raise Skipped("no SymMixer or AsymMixer run with a loadable checkpoint "
                      "(tracking.log_checkpoint=true or the job's output dir)")
    if required:
        raise Skipped(f"no {' or '.join(required)} run with a loadable checkpoint; the figure "
                      "compares a trained SymMixer block with a trained AsymMixer block")
    return pd.concat(traces, ignore_index=True), pd.DataFrame(rows)


def _worst_blocks(census: pd.DataFrame) -> dict[str, int]:
    """Per model kind (sym, asym, para), the (run, block) of the census where E rose at the
    most steps over all start and norm kinds: the block the figure shows (none for a model
    where E never rose: block 0 of its first run)."""
    if census.empty:
        return {}
    per_block = census.groupby(["kind", "run_name", "block"], sort=False,
                               as_index=False)["steps_energy_rose"].sum()
    worst = per_block[per_block["steps_energy_rose"] > 0]
    worst = worst.sort_values("steps_energy_rose", ascending=False, kind="stable")
    worst = worst.drop_duplicates("kind")
    return dict(zip(worst["run_name"], worst["block"], strict=True))


def _symlog_threshold(energies: pd.Series) -> float:
    """The linear range of the per-step change axis: the power of ten at or below 1e-6 of the
    energy's scale (ticks then fall on decades), so a rise of 0.3 on |E| ~ 25 000 (linear
    range 0.01) sits more than a decade above zero."""
    scale = float(np.nanmax(np.abs(energies.to_numpy()))) if len(energies) else 1.0
    return 10.0 ** np.floor(np.log10(max(1e-6 * scale, 1e-12)))


def draw(tables: RunTables, out: Path, models: _RunModels | None = None) -> Drawn:
    """Per energy model (column): E(t) (top) and its change per Euler step (bottom,
    symmetric-log) in the four (start kind, norm kind) settings, for the block where the
    census saw E rise at the most steps, else block 0. ``models``: where the trained models
    come from (default: the tables' store)."""
    with _run_models(tables, models) as models:  # each run's checkpoint judged once
        census = energy_census(tables, models)
        trace, summary = energy_traces(tables, _worst_blocks(census), models)
    labels = list(dict.fromkeys(trace["model"]))
    fig, axes = new_figure(SIZE, 2, len(labels), sharex="col", squeeze=False)
    for col, label in enumerate(labels):
        part = trace[trace["model"] == label]
        top, bottom = axes[0, col], axes[1, col]
        counts = []
        for (start, norm), d in part.groupby(["start", "norm"], sort=False):
            style = {"color": START_COLORS[start], "ls": NORM_STYLES[norm], "lw": 1.2,
                     "alpha": 0.85}
            for i, (_, one) in enumerate(d.groupby("init")):
                lab = f"{start} start, {norm}" if i == 0 else None
                top.plot(one["time"], one["energy"], label=lab, **style)
                bottom.plot(one["time"], one["dE"], **style)
            rise_mask = d["dE"] > RISE_RTOL * d["energy"].shift(1).abs()
            bottom.scatter(d["time"][rise_mask], d["dE"][rise_mask], s=6, color="crimson",
                           zorder=3, lw=0)
            rose = summary[(summary["model"] == label) & (summary["start"] == start)
                           & (summary["norm"] == norm)]["steps_energy_rose"].sum()
            counts.append(f"{start}, {norm}: {rose} of {STEPS * d['init'].nunique()}")
        first = part.iloc[0]
        top.set_title(f"{label}, block {first['block']}\n(run {first['run_name']})")
        top.text(0.97, 0.95, "steps where E rose\n" + "\n".join(counts),
                 transform=top.transAxes, ha="right", va="top", fontsize=7,
                 bbox={"boxstyle": "round", "fc": "white", "ec": "0.7"})
        top.set_ylabel("energy E(x(t))")
        bottom.set_yscale("symlog", linthresh=_symlog_threshold(part["energy"]), linscale=1.5)
        bottom.axhline(0.0, color="0.2", lw=0.8)
        bottom.axhspan(0.0, bottom.get_ylim()[1], color="crimson", alpha=0.08, lw=0)
        bottom.text(0.97, 0.95, "E rose (red dots)", transform=bottom.transAxes, ha="right",
                    va="top", fontsize=7, color="crimson")
        bottom.set_ylabel("change of E per step")
        bottom.set_xlabel(f"time t (Euler, dt = {DT:g})")
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncol=len(names), fontsize=8)
    fig.suptitle("Energy along dx/dt = block update - x of trained blocks\nsolid: affine-free "
                 "norm (the theorem's block); dashed: with the trained LayerNorm affine")
    files = save_figure(fig, out, NAME)
    tables_out = {"table4_energy": summary}
    if not census.empty:
        tables_out["table4b_energy_every_block"] = census
        tables_out["table4c_energy_census"] = census_summary(census)
    return Drawn(NAME, files, tables_out)
