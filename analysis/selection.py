"""Select on validation, report on test (../shared/SCIENCE.md, "Method").

Every choice made from a set of runs (the best λ of a sweep, an Optuna study's best trial)
is made on ``val_acc``: the accuracy on a seeded, class-stratified validation split carved
from the training set (``data.val_fraction``), the sweeps' ``objective``. The test accuracy
(``acc``) is measured once per run and only reported.

Runs logged without a validation split (stores written before ``val_fraction`` defaulted to
0.1, or ``data.val_fraction=0``) still load and are shown, with "–" for ``val_acc``, but
nothing is selected from them: choosing the best of several noisy test scores and reporting
that same score overstates it (the winner's curse), so the selection column says
"none: no val_acc" instead of falling back to the test set.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.significance import binomial_sd
from analysis.tables import summarize

SELECT_ON = "val_acc"
NO_SELECTION = "none: no val_acc"


def accuracy_columns(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per group of ``by`` (the order of ``summarize``): ``val_acc_mean``, ``val_acc_std``
    over seeds, ``n_test`` (test images; NaN when not logged) and ``test_sd``: the binomial
    sampling sd of one run's test accuracy at the group's mean (accuracy points)."""
    val = summarize(df, by, SELECT_ON) if SELECT_ON in df else None
    acc = summarize(df, by, "acc")
    groups = df.groupby(by, sort=False, dropna=False)
    n_test = groups["n_test"].max().to_numpy(dtype=float) if "n_test" in df \
        else np.full(len(acc), np.nan)
    nan = np.full(len(acc), np.nan)
    return pd.DataFrame({
        "val_acc_mean": nan if val is None else val["mean"].to_numpy(),
        "val_acc_std": nan if val is None else val["std"].to_numpy(),
        "n_test": pd.array(np.where(np.isnan(n_test), None, n_test), dtype="Int64"),
        "test_sd": binomial_sd(acc["mean"].to_numpy(), n_test)})


def accuracy_notes(df: pd.DataFrame) -> list[str]:
    """The footnotes of an accuracy table built from the runs ``df``: which accuracy is which,
    whether a validation split was logged, and the test set's own sampling error."""
    notes = ["acc_*: test accuracy at the last epoch, reported only (never used to select); "
             "val_acc_*: accuracy on the held-out validation split, the one any selection "
             "uses."]
    val = df[SELECT_ON] if SELECT_ON in df else pd.Series(np.nan, index=df.index)
    if val.isna().all():
        notes.append("These runs logged no val_acc (no validation split: data.val_fraction "
                     "was 0), shown as –; nothing is selected from them.")
    elif val.isna().any():
        notes.append(f"{int(val.isna().sum())} of {len(val)} runs logged no val_acc (–).")
    sizes = sorted({int(n) for n in df.get("n_test", pd.Series(dtype=float)).dropna()})
    if sizes:
        at85 = ", ".join(f"±{binomial_sd(85.0, n):.2f} at n_test = {n}" for n in sizes)
        notes.append("test_sd: the test set's own sampling error, the binomial sd "
                     "sqrt(p(1-p)/n_test) of one run's test accuracy p (accuracy points; "
                     f"{at85} and 85 %), shared by every run on this test set.")
    else:
        notes.append("test_sd: unknown (–): these runs did not log n_test, the number of "
                     "test images.")
    return notes


def select_best(df: pd.DataFrame, by: list[str], candidate: str) -> pd.DataFrame:
    """Per group of ``by``: the value of ``candidate`` (e.g. ``sb_lambda``) whose runs have the
    highest mean ``val_acc`` over seeds, with that mean, its test accuracy (mean over the same
    runs, reported) and the number of seeds. A group where no run logged ``val_acc`` gets
    ``selected_on`` = NO_SELECTION and NaN in the other columns."""
    rows = []
    for key, grp in df.groupby(by, sort=False, dropna=False) if by else [((), df)]:
        key = key if isinstance(key, tuple) else (key,)
        means = grp.groupby(candidate, dropna=False)[[SELECT_ON, "acc"]].mean() \
            if SELECT_ON in grp else pd.DataFrame()
        row: dict[str, object] = dict(zip(by, key, strict=True))
        if means.empty or means[SELECT_ON].isna().all():
            row.update({"selected_on": NO_SELECTION, candidate: np.nan,
                        "val_acc_mean": np.nan, "test_acc_mean": np.nan, "seeds": 0,
                        "candidates": 0})
        else:
            best = means[SELECT_ON].idxmax()
            chosen = grp[grp[candidate] == best]
            row.update({"selected_on": SELECT_ON, candidate: best,
                        "val_acc_mean": means.loc[best, SELECT_ON],
                        "test_acc_mean": means.loc[best, "acc"],
                        "seeds": int(chosen[SELECT_ON].notna().sum()),
                        "candidates": int(means[SELECT_ON].notna().sum())})
        rows.append(row)
    return pd.DataFrame(rows, columns=[*by, "selected_on", candidate, "val_acc_mean",
                                       "test_acc_mean", "seeds", "candidates"])
