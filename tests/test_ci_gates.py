"""CI's safety net: under CI=true a skipped test or module fails instead of passing silently."""
from __future__ import annotations

from tests.support.cli import REPO

pytest_plugins = ["pytester"]

SKIPPING_TESTS = """
import pytest

def test_runs():
    pass

@pytest.mark.skipif(True, reason="data not installed")
def test_marked_skip():
    pass

def test_skip_at_run_time():
    pytest.skip("browser not found")
"""
SKIPPING_MODULE = """
import pytest
pytest.importorskip("no_such_module_for_ci")

def test_never():
    pass
"""


def _run(pytester, monkeypatch, source: str, ci: str | None):
    pytester.makeconftest("from tests.conftest import pytest_make_collect_report, pytest_runtest_makereport\n")
    pytester.makepyfile(test_case=source)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-o", "addopts=")


def test_skipped_tests_fail_under_ci(pytester, monkeypatch):
    result = _run(pytester, monkeypatch, SKIPPING_TESTS, "true")
    result.assert_outcomes(passed=1, failed=1, errors=1)  # a skip mark skips in setup, so it shows as an error
    result.stdout.fnmatch_lines(["*skipped under CI=true*data not installed*",
                                 "*skipped under CI=true*browser not found*"])
    assert result.ret != 0


def test_a_skipped_module_fails_under_ci(pytester, monkeypatch):
    result = _run(pytester, monkeypatch, SKIPPING_MODULE, "true")
    result.stdout.fnmatch_lines(["*module skipped under CI=true*no_such_module_for_ci*"])
    assert result.ret != 0


def test_skips_stay_skips_outside_ci(pytester, monkeypatch):
    result = _run(pytester, monkeypatch, SKIPPING_TESTS, None)
    result.assert_outcomes(passed=1, skipped=2)
    assert result.ret == 0
