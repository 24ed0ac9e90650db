"""analysis/report.py: the ``report.html`` that make_figures writes beside the figures, opened
from disk (file://) in headless Chromium over the small real sweep of tests/conftest.py
``analysis_sweep`` (the ``figures`` fixture of tests/conftest.py): every image loads,
every table has rows, the skipped figures' reasons, the commit and the sweep's command are
there, and no password. Also, without a browser: strings are escaped, credentials redacted."""

from __future__ import annotations

import re
import time

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image
from test_mlflow_ui import browser  # noqa: F401 - the fixture: headless Chromium via Selenium

from analysis import RunTables
from analysis.figure_result import Drawn
from analysis.report import REPORT, render_report


def _skipped_lines(stdout: str) -> list[tuple[str, str]]:
    return re.findall(r"^  skipped (\S+): (.+)$", stdout, flags=re.MULTILINE)


@pytest.mark.browser
def test_report_renders_in_chromium(figures, analysis_sweep, browser):  # noqa: F811
    from selenium.webdriver.common.by import By

    out, proc = figures
    report = out / REPORT
    assert report.exists(), proc.stdout
    pngs = sorted(out.glob("*.png"))
    drew = re.findall(r"^  drew    ", proc.stdout, flags=re.MULTILINE)
    assert len(pngs) == len(drew) >= 5
    t0 = time.perf_counter()
    browser.get(report.as_uri())
    # wait until every image has finished loading (data: URIs decode asynchronously)
    for _ in range(100):
        if browser.execute_script(
                "return Array.from(document.images).every(i => i.complete)"):
            break
        time.sleep(0.1)
    widths = browser.execute_script(
        "return Array.from(document.images).map(i => [i.alt, i.naturalWidth])")
    assert len(widths) == len(pngs), widths
    assert all(w > 0 for _, w in widths), widths
    # each image is its figure at full size (200 dpi)
    for alt, width in widths:
        with Image.open(out / alt) as img:
            assert width == img.size[0], (alt, width, img.size)
    # every table renders with at least one row of cells
    tables = browser.find_elements(By.TAG_NAME, "table")
    rows = browser.execute_script(
        "return Array.from(document.querySelectorAll('table')).map("
        "t => t.querySelectorAll('tbody tr td').length)")
    written = sorted(out.glob("table*.csv"))
    # the written tables, the key numbers (table1, 1b, 1c) and the runs
    assert len(tables) == len(rows) == len(written) + 3 + 1, (len(tables), written)
    assert all(n > 0 for n in rows), rows
    text = browser.find_element(By.TAG_NAME, "body").text
    skipped = _skipped_lines(proc.stdout)
    assert skipped and all(f"{name}: {why}" in text for name, why in skipped), skipped
    client = MlflowClient(analysis_sweep.uri)
    commit = client.get_run(analysis_sweep.child_run_ids[0]).data.tags["git_commit"]
    assert re.fullmatch(r"[0-9a-f]{40}", commit) and commit in text
    overrides = client.get_run(analysis_sweep.parent_run_id).data.tags["overrides"]
    assert f"python sweep/run.py -m {overrides}" in text
    assert "python analysis/make_figures.py --tracking-uri" in text
    # a SQLite store: every run id, and the command that serves them in the MLflow UI
    assert all(rid in text for rid in analysis_sweep.child_run_ids)
    assert f"mlflow ui --backend-store-uri {analysis_sweep.uri}" in text
    # the table of accuracy: the numbers of table1_accuracy.csv, mean ± sd per variant
    acc = pd.read_csv(out / "table1_accuracy.csv")
    for _, row in acc.iterrows():
        assert f"{row['acc_mean']:.2f} ± {row['acc_std']:.2f}" in text
    html = report.read_text()
    assert "password" not in html.lower()
    assert not re.search(r"<script|<link|src=\"http|href=\"http", html)  # self-contained
    print(f"report {report.stat().st_size / 1e6:.2f} MB, {len(widths)} images, {len(tables)} "
          f"tables; browser {time.perf_counter() - t0:.1f} s")


def _tiny_tables(uri: str, note: str) -> RunTables:
    runs = pd.DataFrame({"run_id": ["a1b2"], "run_name": ["<b>run</b>"], "status": ["FINISHED"],
                         "variant": ["sym"], "seed": [0], "acc": [50.0], "val_acc": [49.0],
                         "tags.git_commit": ["0123abc"]})
    parents = pd.DataFrame({"run_id": ["p1"], "run_name": ["sweep<script>"],
                            "tags.overrides": [note], "tags.mlflow.source.git.commit": ["0123abc"]})
    return RunTables(runs=runs, epochs=pd.DataFrame(), parents=parents, tracking_uri=uri,
                     experiment="exp", experiment_id="7")


def test_report_escapes_every_string(tmp_path):
    png = tmp_path / "fig.png"
    Image.new("RGB", (4, 3), "white").save(png)
    table = pd.DataFrame({"variant": ["<script>alert(1)</script>"], "p": [0.5]})
    table.attrs["notes"] = ["a <script> note & more"]
    drawn = [Drawn("fig<script>alert(1)</script>", [png], {"t<script>": table},
                   note="title <script>alert(2)</script>")]
    page = render_report(drawn, [("fig9<script>", "needs <script> runs")],
                         _tiny_tables("sqlite:////tmp/x.db", "seed=0 note=<script>"),
                         "python analysis/make_figures.py --out '<script>'")
    assert "<script" not in page.lower()
    assert page.count("&lt;script&gt;") >= 8
    assert "<b>run</b>" not in page and "&lt;b&gt;run&lt;/b&gt;" in page
    assert "data:image/png;base64," in page


def test_report_links_a_server_without_its_password(tmp_path):
    canary = "canary-pw-report-5e1"
    uri = f"http://alice:{canary}@mlflow.example:5000"
    page = render_report([], [], _tiny_tables(uri, f"tracking.uri={uri} seed=0"),
                         f"python analysis/make_figures.py --tracking-uri {uri}")
    assert canary not in page
    assert 'href="http://mlflow.example:5000/#/experiments/7/runs/a1b2"' in page
    assert "mlflow ui" not in page  # a server: links, not a command to serve the store
