"""Is an accuracy gap bigger than the seed-to-seed spread? Welch's t-test of each model
variant's final test accuracy against one reference model (the vanilla Mixer, the SymMixer),
within each architecture.

For groups a (the variant) and b (the reference) with n seeds, means m and sample variances
s² (ddof 1):

    t   = (m_a - m_b) / sqrt(s_a²/n_a + s_b²/n_b)
    dof = (s_a²/n_a + s_b²/n_b)² / ((s_a²/n_a)² / (n_a - 1) + (s_b²/n_b)² / (n_b - 1))
    p   = 2 P(T_dof > |t|)          (two-sided; scipy.stats.ttest_ind, equal_var=False)

Welch rather than Student because a symmetric model and a vanilla one need not share their
variance over seeds. With 3 seeds a test has little power: a large p says "not shown at this
n", not "no gap".
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from analysis.groups import display_name, finished, has_lambda, variant_sort_key, varied

COLUMNS = ["variant", "λ", "vs", "n", "n_ref", "acc_mean", "ref_mean", "diff", "t", "dof", "p"]


def _variant_key(model: str, sb_lambda: float) -> tuple[str, float]:
    # sb_lambda tells apart the variants it applies to (AsymMixer); NaN for every other model
    return model, (float(sb_lambda) if has_lambda(model) else float("nan"))


def welch_table(runs: pd.DataFrame, reference: str) -> pd.DataFrame:
    """One row per (variant, architecture) other than ``reference`` (a model name, e.g.
    "vanilla" or "sym"): seeds, means, the gap ``diff`` = variant - reference (accuracy
    points), Welch's t, its degrees of freedom and the two-sided p-value. Empty when the
    reference has fewer than 2 finished seeds in every architecture."""
    df = finished(runs)
    keys = varied(df)
    if df.empty:
        return pd.DataFrame(columns=[*COLUMNS[:2], *keys, *COLUMNS[2:]])
    df["variant_key"] = [_variant_key(m, sb_lambda) for m, sb_lambda
                         in zip(df["model"], df["sb_lambda"], strict=True)]
    rows = []
    for arch, grp in (df.groupby(keys, sort=True, dropna=False) if keys else [((), df)]):
        arch = arch if isinstance(arch, tuple) else (arch,)
        ref = grp.loc[grp["model"] == reference, "acc"].to_numpy(dtype=float)
        if len(ref) < 2:
            continue
        for (model, sb_lambda), part in grp.groupby("variant_key", sort=False):
            if model == reference:
                continue
            acc = part["acc"].to_numpy(dtype=float)
            if len(acc) < 2:
                continue
            test = stats.ttest_ind(acc, ref, equal_var=False)
            # scipy reports dof = 1 when neither group varies; there is no t-distribution then
            dof = float(test.df) if acc.var() + ref.var() > 0 else float("nan")
            rows.append({"variant": display_name(model, sb_lambda), "λ": sb_lambda,
                         **dict(zip(keys, arch, strict=True)),
                         "vs": display_name(reference), "n": len(acc), "n_ref": len(ref),
                         "acc_mean": acc.mean(), "ref_mean": ref.mean(),
                         "diff": acc.mean() - ref.mean(), "t": float(test.statistic),
                         "dof": dof, "p": float(test.pvalue), "_order": variant_sort_key(
                             model, sb_lambda)})
    table = pd.DataFrame(rows, columns=[*COLUMNS[:2], *keys, *COLUMNS[2:], "_order"])
    if not table.empty:
        table = table.sort_values(["_order", *keys], kind="stable")
    return table.drop(columns="_order").reset_index(drop=True).astype({"λ": float}) \
        .replace({np.inf: np.nan})
