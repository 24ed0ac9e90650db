"""Summary statistics over seeds and table files: CSV, Markdown and LaTeX (booktabs).

The LaTeX is written here (no jinja2 needed): a ``tabular`` with ``\\toprule``, ``\\midrule``
and ``\\bottomrule``. A table's footnotes (what was selected on, which test, the test set's
sampling error) travel with it as ``df.attrs["notes"]`` (a list of sentences): below the
Markdown table, under the LaTeX one, and in ``<name>.notes.txt`` beside the CSV.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats


def ci95_halfwidth(values: Sequence[float]) -> float:
    """Half-width of the Student-t 95 % interval of the mean (NaN with fewer than 2 values)."""
    x = np.asarray([v for v in values if v == v], dtype=float)
    if len(x) < 2:
        return float("nan")
    return float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))


def summarize(df: pd.DataFrame, by: list[str], value: str) -> pd.DataFrame:
    """Per group of ``by``: n, mean, std, ci95 (half-width), lo, hi of ``value``."""
    rows = []
    for key, grp in df.groupby(by, sort=False, dropna=False):
        vals = grp[value].dropna().to_numpy(dtype=float)
        key = key if isinstance(key, tuple) else (key,)
        mean = float(vals.mean()) if len(vals) else float("nan")
        half = ci95_halfwidth(vals)
        rows.append({**dict(zip(by, key, strict=False)), "n": len(vals), "mean": mean,
                     "std": float(vals.std(ddof=1)) if len(vals) > 1 else float("nan"),
                     "ci95": half, "lo": mean - half, "hi": mean + half})
    return pd.DataFrame(rows, columns=[*by, "n", "mean", "std", "ci95", "lo", "hi"])


def _fmt(value: object, digits: int) -> str:
    if value is pd.NA:  # a missing entry of an integer column (e.g. n_test not logged)
        return "–"
    if isinstance(value, (float, np.floating)):
        if value != value:
            return "–"
        # a non-zero value that would round to 0.00 (a p-value, a small ratio) keeps its digits
        if value != 0 and (abs(value) < 0.5 * 10**-digits or abs(value) >= 1e5):
            return f"{value:.{digits}g}"
        return f"{value:.{digits}f}"
    return str(value)


def _latex_escape(text: str) -> str:
    out = text
    for char, rep in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"),
                      ("#", r"\#"), ("_", r"\_"), ("{", r"\{"), ("}", r"\}"),
                      ("λ", r"$\lambda$"), ("±", r"$\pm$"), ("–", "--")):
        out = out.replace(char, rep)
    return out.replace(r"\textbackslash\{\}", r"\textbackslash{}")


def table_notes(df: pd.DataFrame) -> list[str]:
    """The table's footnotes (``df.attrs["notes"]``), [] when it has none."""
    return [str(n) for n in df.attrs.get("notes", [])]


def to_markdown(df: pd.DataFrame, digits: int = 2) -> str:
    """A GitHub Markdown table (no tabulate dependency), its notes below it."""
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    align = "|" + "|".join("---:" if pd.api.types.is_numeric_dtype(df[c]) else "---"
                           for c in df.columns) + "|"
    body = ["| " + " | ".join(_fmt(v, digits) for v in row) + " |"
            for row in df.itertuples(index=False)]
    notes = [f"\n{note}" for note in table_notes(df)]
    return "\n".join([head, align, *body, *notes]) + "\n"


def to_booktabs(df: pd.DataFrame, digits: int = 2, caption: str | None = None) -> str:
    """A LaTeX booktabs ``tabular`` (inside a ``table`` when ``caption`` is given), its notes
    below it in small type."""
    spec = "".join("r" if pd.api.types.is_numeric_dtype(df[c]) else "l" for c in df.columns)
    lines = [rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(_latex_escape(str(c)) for c in df.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(_latex_escape(_fmt(v, digits)) for v in row) + r" \\"
              for row in df.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += [rf"\par\smallskip{{\footnotesize {_latex_escape(note)}}}"
              for note in table_notes(df)]
    if caption:
        lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{_latex_escape(caption)}}}",
                 *lines, r"\end{table}"]
    return "\n".join(lines) + "\n"


def write_table(df: pd.DataFrame, out: Path, name: str, digits: int = 2,
                caption: str | None = None) -> list[Path]:
    """``<out>/<name>.csv`` (full precision), ``.md`` and ``.tex``, and ``.notes.txt`` when the
    table has notes; returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    csv, md, tex = out / f"{name}.csv", out / f"{name}.md", out / f"{name}.tex"
    df.to_csv(csv, index=False)
    md.write_text(to_markdown(df, digits))
    tex.write_text(to_booktabs(df, digits, caption))
    paths = [csv, md, tex]
    if table_notes(df):
        paths.append(out / f"{name}.notes.txt")
        paths[-1].write_text("\n".join(table_notes(df)) + "\n")
    return paths
