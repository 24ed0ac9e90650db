"""One self-contained HTML page per sweep, ``report.html``, beside its figures.

``write_report(out, drawn, skipped, tables, command)`` writes ``<out>/report.html`` holding:

* where the numbers come from: the ``make_figures`` command line, each sweep's own command
  (its parent run's ``overrides`` tag, else its MLflow note), the git commit(s) the runs
  recorded (``git_commit`` / ``mlflow.source.git.commit``) and the tracking store;
* the key numbers, picked from the tables already written (no new statistic): test (and
  validation) accuracy mean ± sd per variant from ``table1_accuracy``, and gap, raw p and Holm
  p of the Welch tables (``table1b``, ``table1c``);
* every figure drawn (its PNG as a ``data:`` URI) with the tables behind it (the DataFrames
  ``write_table`` wrote as CSV / Markdown, formatted as the Markdown is) and their notes;
* the figures skipped and why;
* the runs: links into the MLflow UI for a tracking server
  (``<uri>/#/experiments/<exp_id>/runs/<run_id>``); for a database or file store, the run ids
  and the ``mlflow ui --backend-store-uri ...`` command that serves them.

The page needs nothing else (no CDN, no script, an inline style sheet), so it can be mailed or
attached as is. Every string goes through ``tracking.secrets.redact`` and ``html.escape``; a
link's URL has its ``user:password@`` removed.
"""

from __future__ import annotations

import base64
import html
import shlex
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from analysis.figure_result import Drawn
from analysis.load_runs import RunTables
from analysis.tables import _fmt, table_notes
from tracking.secrets import redact, split_credentials

REPORT = "report.html"
DIGITS = 2  # as the Markdown tables
COMMIT_TAGS = ("tags.git_commit", "tags.mlflow.source.git.commit")
NOTE_TAG = "tags.mlflow.note.content"
STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 1em auto; padding: 0 1em;
       color: #222; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .6em 0; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .2em .5em; white-space: nowrap; }
.wide { overflow-x: auto; }
th { background: #f2f2f2; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
code, pre { background: #f6f6f6; } pre { padding: .5em; white-space: pre-wrap;
            word-break: break-all; }
.note { color: #555; font-size: .9em; margin: .2em 0; }
"""


def esc(value: object) -> str:
    """``value`` as text safe inside HTML (element text or a quoted attribute), credentials
    redacted first."""
    return html.escape(redact(str(value)), quote=True)


def make_figures_command(argv: Sequence[str]) -> str:
    """The command line of ``make_figures`` with arguments ``argv``, quoted for a shell."""
    return shlex.join(["python", "analysis/make_figures.py", *argv])


def html_table(df: pd.DataFrame, digits: int = DIGITS) -> str:
    """``df`` as an HTML table, cells formatted as its Markdown (numeric columns right-aligned),
    its notes (``df.attrs["notes"]``, the ``.notes.txt`` file) below it."""
    notes = "".join(f'<p class="note">{esc(n)}</p>' for n in table_notes(df))
    if df.empty:
        return f'<p class="note">(no rows)</p>{notes}'
    numeric = [pd.api.types.is_numeric_dtype(df[c]) for c in df.columns]
    head = "".join(f"<th>{esc(c)}</th>" for c in df.columns)
    rows = "".join(
        "<tr>" + "".join(f'<td class="num">{esc(_fmt(v, digits))}</td>' if num
                         else f"<td>{esc(_fmt(v, digits))}</td>"
                         for v, num in zip(row, numeric, strict=True)) + "</tr>\n"
        for row in df.itertuples(index=False))
    return (f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>\n{rows}</tbody>'
            f"</table></div>{notes}")


def _mean_sd(df: pd.DataFrame, mean: str, sd: str) -> list[str]:
    return [f"{_fmt(m, DIGITS)} ± {_fmt(s, DIGITS)}" for m, s in zip(df[mean], df[sd],
                                                                     strict=True)]


def _key_accuracy(df: pd.DataFrame) -> pd.DataFrame:
    """table1_accuracy: the variant and its configuration, seeds, test (val) acc mean ± sd."""
    cols = list(df.columns)
    ids = [c for c in cols[:cols.index("seeds")] if c != "model"] if "seeds" in cols else []
    key = df[[*ids, "seeds"]].copy() if "seeds" in cols else df[ids].copy()
    key["test acc % (mean ± sd)"] = _mean_sd(df, "acc_mean", "acc_std")
    if "val_acc_mean" in cols and df["val_acc_mean"].notna().any():
        key["val acc % (mean ± sd)"] = _mean_sd(df, "val_acc_mean", "val_acc_std")
    return key


def _key_welch(df: pd.DataFrame) -> pd.DataFrame:
    """A Welch table: the variant, its reference, the gap, raw p and Holm p."""
    cols = list(df.columns)
    ids = cols[:cols.index("n")] if "n" in cols else ["variant", "vs"]
    return df[[*ids, *[c for c in ("diff", "p", "p_holm") if c in cols]]]


# table name -> its key numbers (columns of the table, never a new statistic)
KEY_NUMBERS: dict[str, tuple[str, Callable[[pd.DataFrame], pd.DataFrame]]] = {
    "table1_accuracy": ("Accuracy per variant", _key_accuracy),
    "table1b_welch_vs_vanilla": ("Welch's t-test against the vanilla Mixer", _key_welch),
    "table1c_welch_vs_sym": ("Welch's t-test against the SymMixer", _key_welch),
}


def _without_notes(df: pd.DataFrame) -> pd.DataFrame:
    """A copy without ``attrs`` (the notes stay with the full table below)."""
    df = df.copy()
    df.attrs = {}
    return df


def _png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def commits(tables: RunTables) -> Counter:
    """git commit -> number of runs (jobs and sweep parents) that recorded it."""
    count: Counter = Counter()
    for frame in (tables.runs, tables.parents):
        for _, row in frame.iterrows():
            found = {str(row[c]) for c in COMMIT_TAGS
                     if c in frame.columns and isinstance(row[c], str) and row[c]}
            count.update(found)
    return count


def _is_server(uri: str) -> bool:
    return uri.lower().startswith(("http://", "https://"))


def _provenance(tables: RunTables, command: str) -> str:
    parts = [f"<p>Figures and tables: <code>{esc(command)}</code></p>"]
    for _, parent in tables.parents.iterrows():
        overrides, note = parent.get("tags.overrides"), parent.get(NOTE_TAG)
        sweep_cmd = (f"python sweep/run.py -m {overrides}" if isinstance(overrides, str)
                     else note if isinstance(note, str) else "not recorded")
        parts.append(f"<p>Sweep <b>{esc(parent['run_name'])}</b> (parent run "
                     f"<code>{esc(parent['run_id'])}</code>):</p><pre>{esc(sweep_cmd)}</pre>")
    if tables.parents.empty:
        parts.append("<p>No sweep parent run in this selection (runs logged without a sweep).</p>")
    found = commits(tables)
    if found:
        items = "".join(f"<li><code>{esc(c)}</code> ({n} runs)</li>" for c, n in
                        found.most_common())
        parts.append(f"<p>Git commit{'s' if len(found) > 1 else ''}:</p><ul>{items}</ul>")
    else:
        parts.append("<p>Git commit: not recorded by these runs.</p>")
    base, _userinfo = split_credentials(tables.tracking_uri)
    parts.append(f"<p>Tracking store: <code>{esc(base)}</code>, experiment "
                 f"<b>{esc(tables.experiment)}</b> (id {esc(tables.experiment_id)})</p>")
    return "\n".join(parts)


def _runs_section(tables: RunTables) -> str:
    base, _userinfo = split_credentials(tables.tracking_uri)
    base = base.rstrip("/")
    server = _is_server(base)
    runs = tables.runs.sort_values("run_name", kind="stable") if "run_name" in tables.runs \
        else tables.runs
    rows = []
    for _, run in runs.iterrows():
        rid = esc(run["run_id"])
        if server:
            href = esc(f"{base}/#/experiments/{tables.experiment_id}/runs/{run['run_id']}")
            rid = f'<a href="{href}">{rid}</a>'
        cells = [esc(run.get("run_name", "")), esc(run.get("variant", "")),
                 esc(_fmt(run.get("seed", float("nan")), 0)), esc(run.get("status", "")),
                 esc(_fmt(run.get("acc", float("nan")), DIGITS)),
                 esc(_fmt(run.get("val_acc", float("nan")), DIGITS)), f"<code>{rid}</code>"]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("run", "variant", "seed", "status", "test acc %",
                                             "val acc %", "MLflow run id"))
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    if server:
        href = esc(f"{base}/#/experiments/{tables.experiment_id}/runs")
        intro = (f'<p>Each run id links to its page in the MLflow UI; the experiment: '
                 f'<a href="{href}">{href}</a></p>')
    else:
        ui = shlex.join(["mlflow", "ui", "--backend-store-uri", base])
        intro = (f"<p>The store is not a server: serve it with</p><pre>{esc(ui)}</pre><p>and "
                 f"open <code>http://127.0.0.1:5000/#/experiments/{esc(tables.experiment_id)}"
                 "/runs/&lt;run id&gt;</code>.</p>")
    return intro + table


def render_report(drawn: Sequence[Drawn], skipped: Sequence[tuple[str, str]],
                  tables: RunTables, command: str) -> str:
    """The report's HTML (see the module docstring); reads the drawn figures' PNG files."""
    sweeps = ", ".join(str(n) for n in tables.parents.get("run_name", [])) or "all runs"
    title = f"{tables.experiment}: {sweeps}"
    written = {name: df for item in drawn for name, df in item.tables.items()}
    key = "".join(f"<h3>{esc(what)} <small>({esc(name)})</small></h3>"
                  + html_table(_without_notes(fn(written[name])))
                  for name, (what, fn) in KEY_NUMBERS.items()
                  if name in written and not written[name].empty)
    figures = []
    for item in drawn:
        imgs = "".join(f'<p><img src="{_png_data_uri(f)}" alt="{esc(f.name)}"></p>'
                       for f in item.files if f.suffix.lower() == ".png")
        other = ", ".join(f.name for f in item.files if f.suffix.lower() != ".png")
        note = f'<p class="note">{esc(item.note)}</p>' if item.note else ""
        tabs = "".join(f"<h4>{esc(name)}</h4>{html_table(df)}"
                       for name, df in item.tables.items())
        figures.append(f'<section id="{esc(item.name)}"><h3>{esc(item.name)}</h3>{note}{imgs}'
                       f'<p class="note">also: {esc(other or "-")}</p>{tabs}</section>')
    skips = "".join(f"<li><b>{esc(n)}</b>: {esc(why)}</li>" for n, why in skipped)
    toc = "".join(f'<li><a href="#{esc(item.name)}">{esc(item.name)}</a></li>' for item in drawn)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = [
        f"<h1>{esc(title)}</h1>",
        f'<p class="note">{len(tables.runs)} runs, {len(drawn)} figures drawn, {len(skipped)} '
        f"skipped; written {stamp}</p>",
        "<h2>How these were made</h2>", _provenance(tables, command),
        "<h2>Key numbers</h2>",
        key or "<p>No accuracy or Welch table was drawn from these runs.</p>",
        f"<h2>Figures</h2><ul>{toc}</ul>", *figures,
        "<h2>Skipped figures</h2>", f"<ul>{skips}</ul>" if skips else "<p>None.</p>",
        "<h2>Runs</h2>", _runs_section(tables),
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(title)}</title><style>{STYLE}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def write_report(out: Path, drawn: Sequence[Drawn], skipped: Sequence[tuple[str, str]],
                 tables: RunTables, command: str) -> Path:
    """Write ``<out>/report.html`` (see the module docstring); returns its path."""
    path = Path(out) / REPORT
    path.write_text(render_report(drawn, skipped, tables, command), encoding="utf-8")
    return path
