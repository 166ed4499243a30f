"""Shared fixtures: every test gets its own MLflow store; prepared data is cached once per session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


@pytest.fixture(scope="session", autouse=True)
def data_cache(tmp_path_factory) -> Path:
    """One data cache for the whole session (set before any test loads data)."""
    root = Path(os.environ.get("DEEPSUITE_TEST_CACHE") or tmp_path_factory.mktemp("data-cache"))
    os.environ["DEEPSUITE_CACHE_DIR"] = str(root)
    return root


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """A fresh folder to run in: its mlruns/ is the test's own MLflow store."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path
