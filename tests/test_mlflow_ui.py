"""The MLflow UI over a small real sweep (tests/conftest.py ``analysis_sweep``): `mlflow server`
on 127.0.0.1, headless Debian Chromium driven by Selenium. The experiment page lists the sweep's
parent run and, expanded, its child runs by name; a child run's page shows test_acc and the
symmetry metrics. Screenshots go to the test's tmp dir. Also: the analysis reads the same runs
through the server's REST API as from the SQLite file."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from services import mlflow_server

from analysis import load_runs

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WAIT_S = 60


@pytest.fixture(scope="module")
def server(analysis_sweep, tmp_path_factory) -> Iterator[str]:
    """`mlflow server` over the fixture sweep's SQLite store."""
    with mlflow_server(tmp_path_factory.mktemp("mlflow_server"),
                       backend_uri=analysis_sweep.uri) as url:
        yield url


def test_analysis_reads_the_tracking_server(server, analysis_sweep):
    via_server = load_runs(server, analysis_sweep.experiment, sweep=analysis_sweep.sweep_name,
                           metrics=["test_acc"])
    via_file = load_runs(analysis_sweep.uri, analysis_sweep.experiment,
                         sweep=analysis_sweep.sweep_name, metrics=["test_acc"])
    a = via_server.runs.set_index("run_id").sort_index()
    b = via_file.runs.set_index("run_id").sort_index()
    assert list(a.index) == list(b.index) and len(a) == 10
    assert (a["acc"] == b["acc"]).all() and (a["run_name"] == b["run_name"]).all()
    assert len(via_server.epochs) == len(via_file.epochs) == 20


@pytest.fixture
def browser(tmp_path) -> Iterator[object]:
    """Headless Chromium (Debian's chromium + chromium-driver) through Selenium."""
    # a missing browser is a broken set-up, never a reason to pass quietly
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    assert not missing, (f"{missing} not found: the MLflow UI test needs Debian's chromium and "
                         "chromium-driver (`make system` installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1700,950",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(options=opts, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def _wait_text(driver, texts: list[str], timeout: float = WAIT_S) -> str:
    """Wait until the page's visible text holds every one of ``texts``; returns it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def ready(d):
        body = d.find_element(By.TAG_NAME, "body").text
        return body if all(t in body for t in texts) else False

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.5).until(ready)
    except Exception as err:
        body = driver.find_element(By.TAG_NAME, "body").text
        missing = [t for t in texts if t not in body]
        raise AssertionError(f"the page never showed {missing}; it shows:\n{body[:3000]}") \
            from err


def _close_assistant(driver) -> None:
    """Close MLflow 3's assistant side panel, if open, so the screenshot shows the runs."""
    from selenium.webdriver.common.by import By

    for button in driver.find_elements(By.CSS_SELECTOR, "button[aria-label='Close']"):
        try:
            button.click()
        except Exception:  # noqa: BLE001, S112 - not clickable: not the panel's button
            continue


@pytest.mark.browser
def test_mlflow_ui_lists_sweep_and_shows_run_metrics(server, analysis_sweep, browser, tmp_path):
    from selenium.webdriver.common.by import By

    store = analysis_sweep
    client = MlflowClient(store.uri)
    children = {client.get_run(r).info.run_name: r for r in store.child_run_ids}
    driver = browser
    driver.get(f"{server}/#/experiments/{store.experiment_id}/runs")
    _wait_text(driver, [store.sweep_name, "Training runs"])
    _close_assistant(driver)
    body = driver.find_element(By.TAG_NAME, "body").text
    if not all(name in body for name in children):
        # child runs are nested under the collapsed parent: expand it
        expand = driver.find_element(
            By.XPATH, f"//a[contains(@href, '/runs/{store.parent_run_id}')]"
                      "/ancestor::div[contains(@class, 'ag-cell')][1]//button")
        expand.click()
    body = _wait_text(driver, sorted(children))
    assert "11 matching runs" in body
    time.sleep(0.5)  # let the row colours settle before the screenshot
    runs_png = tmp_path / "mlflow_runs.png"
    driver.save_screenshot(str(runs_png))

    name = "vanilla-d2-w16-s0"
    driver.get(f"{server}/#/experiments/{store.experiment_id}/runs/{children[name]}")
    body = _wait_text(driver, [name, "test_acc", "symmetry/b0/token/cos",
                               "symmetry/mean/channel/symfrac", "Parent run", store.sweep_name])
    run_png = tmp_path / "mlflow_run.png"
    driver.save_screenshot(str(run_png))
    # the value shown is the run's last test accuracy
    acc = client.get_run(children[name]).data.metrics["test_acc"]
    shown = f"{acc:.6f}".rstrip("0").rstrip(".")[:6]  # the UI writes 35.0 as "35"
    assert f"test_acc {shown}" in body.replace("\n", " ")
    for png in (runs_png, run_png):
        assert png.stat().st_size > 20_000
