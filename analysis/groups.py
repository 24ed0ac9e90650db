"""Which runs belong together: finished runs, the architecture keys a selection varies, and
the display order and names of the model variants."""

from __future__ import annotations

import pandas as pd

from analysis.style import MODEL_NAMES, MODEL_ORDER

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


def variant_sort_key(model: str, lam: float) -> tuple[int, float]:
    """SymMixer, AsymMixer from large to small lam, ParaMixer, vanilla, then anything else."""
    rank = MODEL_ORDER.index(model) if model in MODEL_ORDER else len(MODEL_ORDER)
    return rank, -(lam if lam == lam else 0.0)


def display_name(model: str, lam: float | None = None) -> str:
    """'SymMixer', 'AsymMixer λ=1e-4', 'ParaMixer', 'MLP-Mixer (vanilla)'."""
    name = MODEL_NAMES.get(model, str(model))
    if model == "asym" and lam is not None and lam == lam:
        from sweep.run_name import format_float

        name += f" λ={format_float(float(lam))}"
    return name
