"""`deepsuite ui` in a real browser, and `deepsuite compare` in the terminal, over two finished runs.

Headless Chromium (Debian's chromium + chromium-driver) driven by Selenium against the real MLflow
server that `deepsuite ui` starts on a free loopback port. Screenshots go to test-artifacts/ui/.
"""
from __future__ import annotations

import re
import shutil
import socket
import tempfile
import time
from pathlib import Path

import mlflow
import pytest

from deepsuite.app.ui import free_port, port_is_free
from tests.support.data import needs_fashion_mnist
from tests.support.cli import run_cli
from tests.support.ui_runs import ARTIFACTS, RUN_NAMES, start_cli, two_finished_runs

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--window-size=1400,1000"]
PAGE_TIMEOUT_S = 90  # the UI's first page load on a busy 2-core machine
SHOTS = ARTIFACTS / "ui"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return two_finished_runs(tmp_path_factory)


@pytest.fixture(scope="module")
def runs(store):
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store}/mlruns/mlflow.db")
    experiment = client.get_experiment_by_name("image-classification")
    found = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"])
    assert [r.info.status for r in found] == ["FINISHED", "FINISHED"]
    assert sorted(r.info.run_name for r in found) == sorted(RUN_NAMES)
    return experiment.experiment_id, found


@pytest.fixture(scope="module")
def ui(store):
    port = free_port()
    server = start_cli(["ui", "--store", "mlruns", "--port", str(port)], cwd=store)
    try:
        server.wait_for("press Ctrl-C", timeout=240)
        yield server, f"http://127.0.0.1:{port}", port
    finally:  # Ctrl-C, which stops the MLflow server it started too (a kill would leave that one running)
        try:
            server.interrupt()
        finally:
            server.kill()


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("headless browser test needs Debian's chromium and chromium-driver "
                    "(apt-get install chromium chromium-driver); CI installs them")
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="deepsuite-chromium-")
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(PAGE_TIMEOUT_S)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def page_text_with(driver, *needles: str, timeout: float = PAGE_TIMEOUT_S) -> str:
    """Wait until the rendered page shows every needle; fail with what it does show."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = driver.find_element("tag name", "body").text
        if all(needle in text for needle in needles):
            return text
        time.sleep(0.5)
    raise AssertionError(f"page {driver.current_url} never showed {needles}; it shows:\n{text[:3000]}")


def scrolled_to(driver, needle: str, timeout: float = PAGE_TIMEOUT_S) -> str:
    """The page's text once `needle` shows: the compare view's tables draw only the rows inside their 300-pixel
    windows (react-virtualized grids), so each grid is scrolled down a step at a time, as a user scrolls."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = driver.find_element("tag name", "body").text
        if needle in text:
            return text
        driver.execute_script("for (const grid of document.querySelectorAll('.ReactVirtualized__Grid')) {"
                              " grid.scrollTop += 100; grid.dispatchEvent(new Event('scroll')); }")
        time.sleep(0.5)
    raise AssertionError(f"page {driver.current_url} never showed {needle!r}; it shows:\n{text[:3000]}")


@needs_fashion_mnist
def test_ui_prints_runs_table_link(ui, runs):
    server, url, _ = ui
    experiment_id, _ = runs
    assert f"open {url}" in server.output
    assert f"{url}/#/experiments/{experiment_id}/runs?workflowType=machine_learning" in server.output


@needs_fashion_mnist
def test_runs_table_shows_both_runs(ui, runs, browser):
    _, url, _ = ui
    experiment_id, found = runs
    browser.get(f"{url}/#/experiments/{experiment_id}/runs?workflowType=machine_learning")
    names = [run.info.run_name for run in found]
    text = page_text_with(browser, *names)
    browser.save_screenshot(str(SHOTS / "runs_table.png"))
    assert "2 matching runs" in text and "Duration" in text


@needs_fashion_mnist
def test_compare_view_of_two_runs_shows_metrics(ui, runs, browser, store):
    _, url, _ = ui
    _, found = runs
    table = run_cli(["compare", "image-classification", "--last", "2", "--ui-url", url], cwd=store)
    assert table.code == 0, table.err
    link = re.search(r"compare: (\S+)", table.out).group(1)  # the link `deepsuite compare` prints
    browser.get(link)
    page_text_with(browser, "Comparing 2 Runs", *[r.info.run_name for r in found])
    text = scrolled_to(browser, "test_accuracy")  # below the system/* metrics in the Metrics table
    browser.save_screenshot(str(SHOTS / "compare.png"))
    assert "model.dropout" in text


@needs_fashion_mnist
def test_run_artifacts_show_confusion_matrix(ui, runs, browser):
    _, url, _ = ui
    experiment_id, found = runs
    run_id = found[0].info.run_id
    browser.get(f"{url}/#/experiments/{experiment_id}/runs/{run_id}/artifacts/plots/confusion_matrix.png")
    page_text_with(browser, "plots/confusion_matrix.png", "learning_curves.png")
    deadline = time.monotonic() + PAGE_TIMEOUT_S
    shown = []
    while time.monotonic() < deadline and not shown:  # the preview is fetched from the server as a blob
        shown = [img for img in browser.find_elements("tag name", "img")
                 if (img.get_attribute("src") or "").startswith("blob:")
                 and int(img.get_attribute("naturalWidth") or 0) > 200]
        time.sleep(0.5)
    browser.save_screenshot(str(SHOTS / "confusion_matrix.png"))
    assert shown, "the confusion matrix image was not rendered"


def drawn_line(driver, title: str, timeout: float = PAGE_TIMEOUT_S) -> str:
    """The SVG path of the line plotted in the chart titled `title`; the UI adds a chart card only when it is
    scrolled near, so the page is scrolled down card by card until this one appears (ask for charts in their
    order on the page). Fails unless a line through two points or more is drawn in that card itself."""
    card = (f"//h4[text()='{title}']/ancestor::*[count(.//h4) = 1 and "
            ".//*[local-name()='path' and contains(@class, 'js-line')]][1]")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shown = (driver.find_elements("xpath", f"//h4[text()='{title}']")
                 or driver.find_elements("xpath", "//*[contains(text(), '(system/')]"))  # the cards' legends
        if shown:
            driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", shown[-1])
        paths = [path.get_attribute("d") or "" for found in driver.find_elements("xpath", card)[:1]
                 for path in found.find_elements("css selector", "path.js-line")]
        if any("L" in d for d in paths):  # "M x,y L x,y ...": a line through two points or more
            return next(d for d in paths if "L" in d)
        time.sleep(0.5)
    raise AssertionError(f"no line drawn in the chart {title!r} on {driver.current_url}")


@needs_fashion_mnist
def test_models_page_lists_each_runs_model_with_its_test_metric(ui, runs, browser):
    """The experiment's Models page (MLflow 3's LoggedModels), reached from the runs table's side bar as a user
    does: one model per run, named "model", from its source run, with the test accuracy linked to it."""
    _, url, _ = ui
    experiment_id, found = runs
    browser.get(f"{url}/#/experiments/{experiment_id}/runs?workflowType=machine_learning")
    page_text_with(browser, *[run.info.run_name for run in found])
    browser.set_window_size(3000, 1000)  # the grid draws only the columns on screen: the metrics are far right
    try:
        browser.find_element("xpath", "//a[normalize-space()='Models']").click()
        text = page_text_with(browser, "Model name", "Source run", "test_accuracy", "Ready")
        rows = [row.text.replace("\n", " | ") for row in browser.find_elements("css selector", "[role=row]")]
        browser.save_screenshot(str(SHOTS / "models.png"))
    finally:
        browser.set_window_size(1400, 1000)
    assert "/models" in browser.current_url and "Track and compare versions of your models" not in text
    models = [row.split(" | ")[1] for row in rows if " | Ready | " in row]  # colour | name | status | created
    assert models == ["model", "model"], rows  # both runs' models, by name
    for run in found:  # the source run's name and its test accuracy, as MLflow shows a float, in one row
        value = repr(run.data.metrics["test_accuracy"])
        assert any(run.info.run_name in row and value in row for row in rows), (run.info.run_name, value, rows)
    assert "fashion_mnist" in text  # the dataset the metric was measured on, linked to it


@needs_fashion_mnist
def test_system_metrics_tab_draws_cpu_and_memory_charts(ui, runs, browser):
    """The run page's System metrics tab, opened by clicking the run in the runs table and then the tab: MLflow's
    own CPU and memory charts, each drawing a line through the points sampled while the run trained."""
    _, url, _ = ui
    experiment_id, found = runs
    run = found[0]
    browser.get(f"{url}/#/experiments/{experiment_id}/runs?workflowType=machine_learning")
    page_text_with(browser, run.info.run_name)
    browser.find_element("xpath", f"//a[contains(@href, '/runs/{run.info.run_id}') and "
                                  f"contains(., '{run.info.run_name}')]").click()
    page_text_with(browser, "Overview", "System metrics", "Artifacts")
    browser.find_element("xpath", "//button[@role='tab' and normalize-space()='System metrics']").click()
    text = page_text_with(browser, "cpu_utilization_percentage",
                          f"{run.info.run_name} (system/cpu_utilization_percentage)")  # a chart's legend
    assert browser.current_url.endswith(f"/runs/{run.info.run_id}/system-metrics")
    assert "No system metrics" not in text
    for chart in ("cpu_utilization_percentage", "system_memory_usage_megabytes"):
        drawn_line(browser, chart)
    browser.save_screenshot(str(SHOTS / "system_metrics.png"))


@needs_fashion_mnist
def test_compare_table_in_terminal(store, runs):
    _, found = runs
    result = run_cli(["compare", "image-classification", "--last", "5"], cwd=store)
    assert result.code == 0, result.err
    out = result.out
    for run in found:
        assert run.info.run_name in out and run.info.run_id[:8] in out
    assert "model.dropout" in out and "0.2" in out and "0.4" in out  # the param that differs
    assert "train.epochs" not in out  # equal params are left out
    assert "test_accuracy" in out and "duration" in out and "finished" in out
    assert "http://127.0.0.1:5000/#/compare-runs?runs=" in out and "deepsuite ui" in out


@needs_fashion_mnist
def test_compare_bad_input(store):
    unknown = run_cli(["compare", "image-clasification"], cwd=store)
    assert unknown.code == 2 and "did you mean 'image-classification'" in unknown.err
    zero = run_cli(["compare", "image-classification", "--last", "0"], cwd=store)
    assert zero.code == 2 and "--last 0" in zero.err


def test_ui_refuses_busy_port_and_creates_missing_store(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli(["ui", "--store", "new/store", "--port", str(port)], cwd=tmp_path)
    assert result.code == 2
    assert f"port {port} on 127.0.0.1 is already in use" in result.err and "--port " in result.err
    assert "created an empty store" in result.out and (tmp_path / "new" / "store" / "artifacts").is_dir()
    (tmp_path / "a-file").write_text("x")
    not_folder = run_cli(["ui", "--store", "a-file"], cwd=tmp_path)
    assert not_folder.code == 2 and "is a file" in not_folder.err


@needs_fashion_mnist
def test_ctrl_c_stops_ui_cleanly(ui):
    server, url, port = ui
    assert server.interrupt() == 0
    assert "stopped the MLflow server" in server.output
    deadline = time.monotonic() + 20
    while not port_is_free("127.0.0.1", port) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert port_is_free("127.0.0.1", port), "a server process still holds the port after Ctrl-C"


def test_ui_opens_the_store_that_mlflow_tracking_uri_names(tmp_path):
    elsewhere = tmp_path / "team-store"
    elsewhere.mkdir()
    uri = f"sqlite:///{elsewhere}/mlflow.db"
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("sentiment-analysis")
    client.set_terminated(client.create_run(experiment, run_name="set-by-env").info.run_id)
    here = tmp_path / "somewhere-else"
    here.mkdir()
    port = free_port()
    server = start_cli(["ui", "--port", str(port)], cwd=here, env={"MLFLOW_TRACKING_URI": uri})
    try:
        link = server.wait_for("runs of sentiment-analysis", timeout=180)  # the variable's store, with its run
        assert f"/#/experiments/{experiment}/runs" in link
    finally:
        server.interrupt()
    assert "store from MLFLOW_TRACKING_URI" in server.output and "created an empty store" not in server.output
    assert not (here / "mlruns").exists()
    remote = run_cli(["ui", "--port", str(free_port())], cwd=here,
                     env={"MLFLOW_TRACKING_URI": "http://mlflow.example.com:5000"})
    assert remote.code == 2 and "is a tracking server, with its own UI: open it in a browser" in remote.err
