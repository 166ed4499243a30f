"""`deepsuite server`: MLflow's tracking server on PostgreSQL, shared by two concurrent runs.

The end-to-end test starts a throwaway PostgreSQL cluster on loopback (Debian's `postgresql`
package: initdb + pg_ctl into a temp folder; PostgreSQL refuses to run as root, so as root it runs as
the `postgres` system user), then `deepsuite server` on it, then two `deepsuite run` processes at once.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from deepsuite.app.ui import free_port
from tests.support.cli import run_cli
from tests.support.data import needs_fashion_mnist
from tests.support.ui_runs import start_cli


def postgres_program(name: str) -> str | None:
    """Debian keeps initdb/pg_ctl in /usr/lib/postgresql/<version>/bin, off the PATH."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return candidates[-1] if candidates else None


class Postgres:
    """A PostgreSQL cluster in a temp folder, listening on 127.0.0.1 only, trusting local connections."""

    def __init__(self):
        self.bin = {name: postgres_program(name) for name in ("initdb", "pg_ctl", "createdb")}
        missing = [name for name, path in self.bin.items() if path is None]
        if missing:
            pytest.skip(f"PostgreSQL server programs not found ({', '.join(missing)}): apt-get install postgresql")
        self.user: dict = {}
        self.folder = Path(tempfile.mkdtemp(prefix="deepsuite-pg-"))
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root and there is no 'postgres' user to run PostgreSQL as")
            os.chown(self.folder, account.pw_uid, account.pw_gid)
            self.user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        self.port = free_port()
        self.data = self.folder / "data"

    def run(self, *args: str) -> None:
        result = subprocess.run(list(args), capture_output=True, text=True, timeout=180, cwd=self.folder,
                                **self.user)
        assert result.returncode == 0, f"{args[0]} failed:\n{result.stdout}\n{result.stderr}"

    def start(self) -> str:
        self.run(self.bin["initdb"], "-D", str(self.data), "-U", "deepsuite", "--auth=trust", "-E", "UTF8",
                 "--no-locale", "--no-sync")
        options = (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c max_connections=50")
        self.run(self.bin["pg_ctl"], "-D", str(self.data), "-l", str(self.folder / "postgres.log"), "-o", options,
                 "-w", "-t", "120", "start")
        self.run(self.bin["createdb"], "-h", "127.0.0.1", "-p", str(self.port), "-U", "deepsuite", "mlflow")
        return f"postgresql://deepsuite@127.0.0.1:{self.port}/mlflow"

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run([self.bin["pg_ctl"], "-D", str(self.data), "-m", "fast", "-w", "stop"],
                           capture_output=True, timeout=120, cwd=self.folder, **self.user)
        shutil.rmtree(self.folder, ignore_errors=True)


def test_server_explains_bad_backends(tmp_path):
    http = run_cli(["server", "--backend-store-uri", "http://127.0.0.1:5000"], cwd=tmp_path)
    assert http.code == 2 and "use a database URI such as postgresql://" in http.err
    closed = free_port()
    unreachable = run_cli(["server", "--backend-store-uri", f"postgresql://team:s3cret@127.0.0.1:{closed}/mlflow",
                           "--port", str(free_port())], cwd=tmp_path)
    assert unreachable.code == 2 and "cannot connect to postgresql://team:***@127.0.0.1" in unreachable.err
    assert "s3cret" not in unreachable.err



def test_server_with_auth_refuses_anonymous_clients_and_admits_users(tmp_path):
    import urllib.error
    import urllib.request
    from base64 import b64encode

    database = f"sqlite:///{tmp_path}/team.db"
    port = free_port()
    missing = run_cli(["server", "--backend-store-uri", database, "--port", str(port), "--auth"], cwd=tmp_path,
                      env={"MLFLOW_FLASK_SERVER_SECRET_KEY": ""})
    assert missing.code == 2 and "--auth needs MLFLOW_FLASK_SERVER_SECRET_KEY" in missing.err
    secrets = {"MLFLOW_FLASK_SERVER_SECRET_KEY": "csrf-key-for-the-test", "MLFLOW_AUTH_ADMIN_PASSWORD": "Adm1n-pw-42-long"}
    server = start_cli(["server", "--backend-store-uri", database, "--artifacts-destination", str(tmp_path / "art"),
                        "--port", str(port), "--workers", "1", "--auth"], cwd=tmp_path, env=secrets)
    try:
        server.wait_for("press Ctrl-C", timeout=600)
        assert "MLFLOW_TRACKING_USERNAME" in server.wait_for("basic auth", timeout=30)
        search = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=1"
        with pytest.raises(urllib.error.HTTPError) as anonymous:
            urllib.request.urlopen(search, timeout=30)
        assert anonymous.value.code == 401
        wrong = urllib.request.Request(search, headers={"Authorization": "Basic " + b64encode(b"admin:guess").decode()})
        with pytest.raises(urllib.error.HTTPError) as guessed:
            urllib.request.urlopen(wrong, timeout=30)
        assert guessed.value.code == 401
        admin = urllib.request.Request(search, headers={
            "Authorization": "Basic " + b64encode(b"admin:Adm1n-pw-42-long").decode()})
        with urllib.request.urlopen(admin, timeout=30) as answer:
            assert answer.status == 200
    finally:
        server.interrupt()
    output = server.output
    assert "Adm1n-pw-42-long" not in output and "csrf-key-for-the-test" not in output
    assert (tmp_path / "basic_auth.db").exists()  # MLflow's own user store, beside the server

@pytest.mark.slow
@needs_fashion_mnist
def test_two_concurrent_runs_on_a_postgres_backed_server(tmp_path):
    import mlflow
    import psycopg

    postgres = Postgres()
    server = None
    try:
        database = postgres.start()
        port = free_port()
        artifacts = tmp_path / "mlartifacts"
        server = start_cli(["server", "--backend-store-uri", database, "--artifacts-destination", str(artifacts),
                            "--port", str(port), "--workers", "2"], cwd=tmp_path)
        server.wait_for("press Ctrl-C", timeout=960)  # the first start creates MLflow's schema
        url = f"http://127.0.0.1:{port}"
        # the banner's next line; waited for, as the reader thread may not have queued it yet
        assert f"--tracking-uri {url}" in server.wait_for("--tracking-uri", timeout=30)

        results = {}

        def train(dropout: str) -> None:
            machine = tmp_path / f"machine-{dropout}"
            machine.mkdir()
            results[dropout] = run_cli(["run", "image-classification", "--preset", "smoke", "--tracking-uri", url,
                                        "--set", "train.epochs=2", "--set", f"model.dropout={dropout}"],
                                       cwd=machine, timeout=1500)

        threads = [threading.Thread(target=train, args=(d,)) for d in ("0.1", "0.5")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for dropout, result in results.items():
            assert result.code == 0, f"dropout {dropout}:\n{result.err[-3000:]}"

        client = mlflow.MlflowClient(tracking_uri=url)
        experiment = client.get_experiment_by_name("image-classification")
        runs = client.search_runs([experiment.experiment_id])
        assert sorted(r.data.params["model.dropout"] for r in runs) == ["0.1", "0.5"]
        for run in runs:
            run_id = run.info.run_id
            assert run.info.status == "FINISHED" and run_id in results[run.data.params["model.dropout"]].out
            assert run.data.params["train.epochs"] == "2" and 0.0 <= run.data.metrics["test_accuracy"] <= 1.0
            assert [m.step for m in client.get_metric_history(run_id, "val_accuracy")] == [1, 2]
            assert run.info.artifact_uri.startswith("mlflow-artifacts:/")  # proxied through the server
            plot = Path(client.download_artifacts(run_id, "plots/confusion_matrix.png", str(tmp_path / run_id)))
            assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            [model_id] = [o.model_id for o in run.outputs.model_outputs]  # the MLflow model, a LoggedModel
            assert "MLmodel" in {a.path for a in client.list_logged_model_artifacts(model_id)}
            assert list(artifacts.rglob(f"{run_id}/artifacts/export/model.keras"))  # on the server's disk

        with psycopg.connect(database) as connection, connection.cursor() as cursor:  # really in PostgreSQL
            cursor.execute("SELECT status, count(*) FROM runs GROUP BY status")
            assert cursor.fetchall() == [("FINISHED", 2)]

        assert server.interrupt() == 0 and "stopped the MLflow server" in server.output
    finally:
        if server is not None:
            server.kill()
        postgres.stop()
