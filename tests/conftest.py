"""Shared fixtures: every test gets its own MLflow store; prepared data is cached once per session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


MAX_WORKERS = 4  # each worker imports TensorFlow and trains; more than this gains little and costs memory


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: `-p no:xdist` must not make it an unknown one
def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto` (pyproject's addopts): one worker per core this process may use, at most MAX_WORKERS.

    Much of a test's time is single-threaded (imports, subprocess start-up, MLflow, waiting on a server), so
    two workers on two cores finish the default suite in about 57 % of the one-process time."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, MAX_WORKERS))


@pytest.fixture(scope="session", autouse=True)
def data_cache(tmp_path_factory) -> Path:
    """One data cache for the whole session (set before any test loads data), shared by the xdist workers:
    each has its own base temp folder, so theirs is the folder above it (entries are written atomically)."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent / "data-cache" if os.environ.get("PYTEST_XDIST_WORKER") else base / "data-cache"
    root = Path(os.environ.get("DEEPSUITE_TEST_CACHE") or shared)
    root.mkdir(parents=True, exist_ok=True)
    os.environ["DEEPSUITE_CACHE_DIR"] = str(root)
    return root


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """A fresh folder to run in: its mlruns/ is the test's own MLflow store."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def _skips_fail() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _fail_if_skipped_under_ci(report, what: str) -> None:
    if _skips_fail() and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"{what} skipped under CI=true, which counts as a failure: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI=true a skipped test fails: CI installs everything the tests need, so a skip there means a
    promise went unchecked (missing data, browser, database or package), and it must not pass silently."""
    outcome = yield
    _fail_if_skipped_under_ci(outcome.get_result(), "test")


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """The same for a whole module skipped at import (`pytest.importorskip`, `allow_module_level`)."""
    outcome = yield
    _fail_if_skipped_under_ci(outcome.get_result(), "module")
