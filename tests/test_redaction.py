"""Passwords never leave in what the suite prints, records or puts on a command line.

One `redact()` hides the password of every URI-shaped text (user info, even with `/`, `#` or `?` that break
URL parsing, and secret query values such as `?password=`); banners, errors, MLflow params and tags use it,
and database URIs reach `mlflow server` through its environment, not its argv.
"""
from __future__ import annotations

import mlflow
import pytest

from deepsuite.common.redaction import redact
from tests.support.cli import run_in_process

PASSWORD = "pa/ss#w?rd"  # a slash, a hash and a question mark: urlsplit cannot parse it out
URI = f"postgresql://team:{PASSWORD}@127.0.0.1:1/mlflow?sslmode=require&password=q9secret"


@pytest.mark.parametrize("text, shown", [
    (URI, "postgresql://team:***@127.0.0.1:1/mlflow?sslmode=require&password=***"),
    ("cannot connect to mysql://root:s3cret@db/x (refused)", "cannot connect to mysql://root:***@db/x (refused)"),
    ("https://host/file.csv?token=abc&x=1", "https://host/file.csv?token=***&x=1"),
    ("'postgresql://u:p@h/d'", "'postgresql://u:***@h/d'"),
    ("sqlite:///mlruns/mlflow.db?timeout=60", "sqlite:///mlruns/mlflow.db?timeout=60"),
    ("postgresql://user@host/db", "postgresql://user@host/db"),
])
def test_redact_hides_passwords_and_keeps_the_rest(text, shown):
    assert redact(text) == shown


def test_params_tags_and_failure_reasons_are_recorded_redacted(tmp_path):
    from deepsuite.common.tracking import Tracker

    tracker = Tracker(None, tmp_path / "mlruns")
    tracker.start("secrets", "run", {})
    run_id = tracker.run_id
    tracker.log_params({"data.source": f"csv:{URI}"})
    tracker.set_tags({"deepsuite.resolved_source": URI})
    tracker.end("FAILED", f"OperationalError: cannot connect to {URI}")
    run = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlruns/mlflow.db").get_run(run_id)
    recorded = " ".join([*run.data.params.values(), *run.data.tags.values()])
    assert "postgresql://team:***@127.0.0.1" in recorded and PASSWORD not in recorded and "q9secret" not in recorded


def test_child_servers_get_the_database_uri_in_their_environment_not_their_argv():
    from deepsuite.app.team_server import server_command
    from deepsuite.app.ui import ui_command

    for argv in (server_command("/srv/artifacts", "127.0.0.1", 5000, 2), ui_command("/srv/artifacts", "127.0.0.1", 5000)):
        assert "--backend-store-uri" not in argv and not any("postgresql" in a for a in argv)


def test_a_run_against_an_unreachable_server_fails_without_printing_its_password(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail at once (a database URI is retried ~100 s)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    server = f"http://team:{PASSWORD}@127.0.0.1:1/?token=q9secret"
    result = run_in_process(["run", "image-classification", "--preset", "smoke", "--tracking-uri", server], tmp_path,
                            monkeypatch, capsys)
    assert result.code != 0 and "error" in result.err
    assert PASSWORD not in result.out + result.err and "q9secret" not in result.out + result.err


def test_the_team_server_takes_its_database_from_the_environment_and_never_prints_the_password(tmp_path, monkeypatch,
                                                                                               capsys):
    monkeypatch.setenv("MLFLOW_BACKEND_STORE_URI", URI)
    result = run_in_process(["server", "--port", "1"], tmp_path, monkeypatch, capsys)
    assert result.code == 2 and "postgresql://team:***@127.0.0.1:1/mlflow" in result.err
    assert PASSWORD not in result.out + result.err and "q9secret" not in result.out + result.err
    monkeypatch.delenv("MLFLOW_BACKEND_STORE_URI")
    missing = run_in_process(["server"], tmp_path, monkeypatch, capsys)
    assert missing.code == 2 and "export MLFLOW_BACKEND_STORE_URI=" in missing.err
