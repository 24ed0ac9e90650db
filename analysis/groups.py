"""Which runs belong together: finished runs, the configuration keys a selection varies, and
the display order and names of the model variants (from the variant table, models/variants.py;
a model name not in the table sorts last and is shown as it is).

Runs are averaged only when they are replicates: the same variant (model, sb_lambda) and the
same configuration, differing in the seed alone. ``varied`` names every key that tells them
apart (dataset, depth, width, n_iter, and any other logged param that takes several values
within one variant: a learning rate, ``model.init``, ...); the figures group by all of them.
The trials of an Optuna search each have their own configuration: ``replicates`` leaves them
out of the seed-averaged figures (figure 6 shows them).
"""

from __future__ import annotations

import pandas as pd

from analysis.figure_result import Skipped
from models import VARIANTS, display_name, lambda_limit

__all__ = ["ARCH_KEYS", "arch_label", "display_name", "finished", "has_lambda",
           "hopfield_models", "lambda_limit", "lambda_mask", "replicates", "variant_sort_key",
           "varied"]

ARCH_KEYS = ["dataset", "depth", "dim", "n_iter"]
ARCH_NAMES = {"dataset": "", "depth": "depth ", "dim": "width ", "n_iter": "n_iter "}
# params that name the variant or one of ARCH_KEYS (already grouped by) ...
_GROUPED_PARAMS = {"model.name", "model.block", "model.mlp", "model.sb_lambda", "model.depth",
                   "model.dim", "model.n_iter", "data.name"}
# ... and params that do not change what a run trains (sweep/task.py leaves the same keys out of
# the checkpoint fingerprint) or where its files live: runs differing only in these are replicates
_NOT_CONFIG = ("seed", "sweep_name", "objective", "run_name", "optuna.", "tracking.",
               "trainer.progress", "trainer.resume", "trainer.checkpoint",
               "trainer.eval_batch_size", "trainer.device", "trainer.dist_timeout_s",
               "trainer.threads", "data.root", "data.cache_dir")


def finished(runs: pd.DataFrame, need: str = "acc") -> pd.DataFrame:
    """FINISHED runs with a value in column ``need``."""
    if need not in runs:
        return runs.iloc[0:0].copy()
    return runs[(runs["status"] == "FINISHED") & runs[need].notna()].copy()


def _config_param(column: str) -> bool:
    if not column.startswith("params."):
        return False
    key = column.removeprefix("params.")
    return key not in _GROUPED_PARAMS and not any(
        key == k or (k.endswith(".") and key.startswith(k)) for k in _NOT_CONFIG)


def varied(runs: pd.DataFrame, keys: list[str] | None = None) -> list[str]:
    """The keys that tell runs of one variant apart, beyond the seed: the architecture keys
    (dataset, depth, dim, n_iter) with more than one value, then (unless ``keys`` names the
    keys to look at) every other logged config param (column ``params.<key>``) that takes more
    than one value within one variant (model, sb_lambda), one of a set of params that always
    vary together (``model.img_size`` with ``data.image_size``). A param missing from some
    runs (logged by an older version) counts as a value of its own."""
    found = [k for k in (keys or ARCH_KEYS) if k in runs and runs[k].nunique(dropna=True) > 1]
    if keys is not None or runs.empty or "model" not in runs:
        return found
    variant = ["model", "sb_lambda"] if "sb_lambda" in runs else ["model"]
    for col in sorted(c for c in runs.columns if _config_param(c)):
        values = runs[col].astype(str)  # a missing param is its own value ('nan')
        if values.groupby([runs[v].astype(str) for v in variant]).nunique().max() <= 1:
            continue
        if found and values.groupby([runs[k].astype(str) for k in found]).nunique().max() <= 1:
            continue  # fixed by the keys found already (an alias such as model.img_size)
        found.append(col)
    return found


def arch_label(row: pd.Series, keys: list[str]) -> str:
    """'depth 2, width 64' (or 'depth 2, model.init=tied') for the varied ``keys`` of one run
    ('' when none vary)."""
    parts = []
    for k in keys:
        v = row[k]
        v = int(v) if isinstance(v, float) and v == v and v.is_integer() else v
        if k in ARCH_NAMES:
            parts.append(f"{ARCH_NAMES[k]}{v}")
        else:
            parts.append(f"{k.removeprefix('params.')}={'(not logged)' if v != v else v}")
    return ", ".join(parts)


def replicates(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs that may be averaged over seeds: all but the trials of an Optuna search (tag
    ``optuna_trial``), whose searched params (lr, weight decay, ...) differ from trial to
    trial. Raises Skipped when every run is such a trial."""
    if runs.empty or "tags.optuna_trial" not in runs:
        return runs
    trial = runs["tags.optuna_trial"].notna()
    if trial.all():
        raise Skipped(f"the {len(runs)} runs are trials of an Optuna search, each with its own "
                      "searched parameters (no replicates to average over seeds); figure 6 "
                      "shows them")
    return runs[~trial]


def variant_sort_key(model: str, sb_lambda: float) -> tuple[int, float]:
    """The table's order (SymMixer, AsymMixer from large to small sb_lambda, ParaMixer,
    vanilla), then any model not in the table."""
    names = list(VARIANTS)
    rank = names.index(model) if model in names else len(names)
    return rank, -(sb_lambda if sb_lambda == sb_lambda else 0.0)


def has_lambda(model: object) -> bool:
    """sb_lambda applies to ``model`` (its MLP kind has a V); False for a name not in the
    table."""
    variant = VARIANTS.get(model) if isinstance(model, str) else None
    return variant is not None and variant.has_lambda


def lambda_mask(models: pd.Series) -> pd.Series:
    """Boolean mask of ``has_lambda`` over a column of model names (bool even when empty)."""
    return models.map(has_lambda).astype(bool)


def hopfield_models() -> list[str]:
    """The table's Hopfield models (parallel wiring, tied W / W^T: sym, asym), in order: the
    models whose trained blocks the energy figure compares."""
    return [v.name for v in VARIANTS.values() if v.is_hopfield]
