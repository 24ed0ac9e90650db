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

A table makes m tests at once; ``p_holm`` is Holm's step-down adjustment over the m tests of
the table (its family), which keeps the chance of any false rejection at most alpha when
``p_holm < alpha`` is the rule: with the raw p sorted p_(1) <= ... <= p_(m),

    p_holm_(i) = min(1, max_{j <= i} (m - j + 1) p_(j))

The test set has its own sampling error, whatever the seeds do: a model of true accuracy p
measured on n test images scores p ± ``binomial_sd(p, n)`` = sqrt(p (1 - p) / n) (0.36 points
at 85 % with 10 000 images), shared by every run on the same test set.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from analysis.groups import (
    display_name,
    finished,
    has_lambda,
    replicates,
    variant_sort_key,
    varied,
)

COLUMNS = ["variant", "λ", "vs", "n", "n_ref", "acc_mean", "ref_mean", "diff", "t", "dof", "p",
           "p_holm"]


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values, in the order given; NaN entries are no test (they
    stay NaN and do not count in the family size m)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    m = len(tested)
    order = tested[np.argsort(p[tested], kind="stable")]
    running = 0.0
    for i, idx in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[idx]))
        out[idx] = running
    return out


def binomial_sd(acc_percent: float | np.ndarray, n_test: float | np.ndarray) -> np.ndarray:
    """Sampling sd, in accuracy points, of an accuracy measured on ``n_test`` images:
    100 sqrt(p (1 - p) / n) with p = acc_percent / 100 (NaN where n_test is unknown)."""
    p = np.asarray(acc_percent, dtype=float) / 100.0
    n = np.asarray(n_test, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 100.0 * np.sqrt(p * (1.0 - p) / np.where(n > 0, n, np.nan))


def _variant_key(model: str, sb_lambda: float) -> tuple[str, float]:
    # sb_lambda tells apart the variants it applies to (AsymMixer); NaN for every other model
    return model, (float(sb_lambda) if has_lambda(model) else float("nan"))


def welch_table(runs: pd.DataFrame, reference: str) -> pd.DataFrame:
    """One row per (variant, architecture) other than ``reference`` (a model name, e.g.
    "vanilla" or "sym"): seeds, means of the test accuracy, the gap ``diff`` = variant -
    reference (accuracy points), Welch's t, its degrees of freedom, the two-sided p-value and
    its Holm adjustment over the table's tests (``p_holm``; ``attrs["notes"]`` says so). Empty
    when the reference has fewer than 2 finished seeds in every architecture."""
    df = replicates(finished(runs))
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
                         "dof": dof, "p": float(test.pvalue), "p_holm": float("nan"),
                         "_order": variant_sort_key(model, sb_lambda)})
    table = pd.DataFrame(rows, columns=[*COLUMNS[:2], *keys, *COLUMNS[2:], "_order"])
    if not table.empty:
        table = table.sort_values(["_order", *keys], kind="stable")
    table = table.drop(columns="_order").reset_index(drop=True).astype({"λ": float}) \
        .replace({np.inf: np.nan})
    table["p_holm"] = holm(table["p"].to_numpy(dtype=float))
    m = int(table["p"].notna().sum())
    table.attrs["notes"] = [
        f"Test accuracy (reported, never used to select). p: two-sided Welch t-test against "
        f"{display_name(reference)}; p_holm: Holm-Bonferroni adjusted over the m = {m} tests "
        "of this table."]
    return table
