"""Which runs belong together: finished runs, the architecture keys a selection varies, and
the display order and names of the model variants (from the variant table, models/variants.py;
a model name not in the table sorts last and is shown as it is)."""

from __future__ import annotations

import pandas as pd

from models import VARIANTS, display_name, lambda_limit

__all__ = ["ARCH_KEYS", "arch_label", "display_name", "finished", "has_lambda",
           "hopfield_models", "lambda_limit", "lambda_mask", "variant_sort_key", "varied"]

ARCH_KEYS = ["dataset", "depth", "dim", "n_iter"]
ARCH_NAMES = {"dataset": "", "depth": "depth ", "dim": "width ", "n_iter": "n_iter "}


def finished(runs: pd.DataFrame, need: str = "acc") -> pd.DataFrame:
    """FINISHED runs with a value in column ``need``."""
    if need not in runs:
        return runs.iloc[0:0].copy()
    return runs[(runs["status"] == "FINISHED") & runs[need].notna()].copy()


def varied(runs: pd.DataFrame, keys: list[str] | None = None) -> list[str]:
    """The architecture keys (dataset, depth, dim, n_iter) with more than one value."""
    return [k for k in (keys or ARCH_KEYS) if k in runs and runs[k].nunique(dropna=True) > 1]


def arch_label(row: pd.Series, keys: list[str]) -> str:
    """'depth 2, width 64' for the varied ``keys`` of one run ('' when none vary)."""
    parts = []
    for k in keys:
        v = row[k]
        v = int(v) if isinstance(v, float) and v == v and v.is_integer() else v
        parts.append(f"{ARCH_NAMES[k]}{v}")
    return ", ".join(parts)


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
