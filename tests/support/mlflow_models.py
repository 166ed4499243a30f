"""The run's logged MLflow model as MLflow's own tools use it: `mlflow.pyfunc.load_model`, the JSON request
`mlflow models serve` takes, and `mlflow models serve` itself.

`answer_as_served` feeds a JSON body through MLflow's scoring-server code (`scoring_server.invocations`: the
"inputs"/"params" split, the params schema, the prediction, the JSON answer) in this process, so each
pipeline's request shape is checked without starting a server; `mlflow_models_serve` starts the real one.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager
from pathlib import Path

import mlflow
import numpy as np
from PIL import Image

from deepsuite.app.ui import free_port
from tests.support.cli import REPO
from tests.support.serving import tree
from tests.support.store import client_for
from tests.support.ui_runs import QUIET_SERVER_ENV


def logged_model(folder, run):
    """The run's one LoggedModel (the run page's "Logged models"): its name is "model"."""
    [output] = run.outputs.model_outputs
    found = client_for(folder).get_logged_model(output.model_id)
    assert found.name == "model" and found.source_run_id == run.info.run_id
    return found


def model_file(folder, run, name: str, dst: Path) -> Path:
    """One file of the run's logged model (MLmodel, input_example.json, ...), downloaded under `dst`."""
    location = logged_model(folder, run).artifact_location
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{location}/{name}", dst_path=str(dst)))


def load_pyfunc(folder, uri: str, monkeypatch):
    """`mlflow.pyfunc.load_model(uri)` against <folder>/mlruns (the tracking URI restored after the test)."""
    from mlflow.tracking._tracking_service import utils as tracking_utils

    import deepsuite.pipelines  # noqa: F401  (imported from the checkout before MLflow puts the model's code first)

    store = f"sqlite:///{folder}/mlruns/mlflow.db"
    monkeypatch.setattr(sys, "path", list(sys.path))  # MLflow prepends the model's code folder: undone after the test
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setattr(tracking_utils, "_tracking_uri", store)  # as mlflow.set_tracking_uri, undone after the test
    return mlflow.pyfunc.load_model(uri)


def answer_as_served(model, body: dict) -> list:
    """POST /invocations of `mlflow models serve`, without the socket: `body` as JSON through MLflow's
    scoring-server code; returns the predictions (a refused request raises MlflowException, as the server
    turns it into a 400)."""
    from mlflow.pyfunc import scoring_server

    response = scoring_server.invocations(json.dumps(body), "application/json", model,
                                          model.metadata.get_input_schema())
    assert response.status == 200, response.response
    return json.loads(response.response)["predictions"]


def assert_pyfunc_confined(model, cwd: Path, scratch: Path, bodies, monkeypatch, refused: bool) -> None:
    """Requests naming a file never get its content back, whether answered or refused, and leave the working
    folder as it was; the per-request temporary folders are gone afterwards. `bodies(path)` gives JSON bodies
    naming `path`; with `refused`, each must be refused (a model that takes files takes their data)."""
    from mlflow.exceptions import MlflowException

    secret = f"MARKER-{uuid.uuid4().hex}"
    marker = scratch / "secret.txt"
    marker.write_text(f"{secret}\n", encoding="utf-8")
    picture = scratch / "secret.png"
    Image.fromarray(np.tile(np.arange(0, 256, 8, dtype=np.uint8), (32, 1))).save(picture)
    temporary = scratch / "tmp"
    temporary.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    before = tree(cwd)
    for body in [*bodies(str(marker)), *bodies(str(picture))]:
        try:
            answer = json.dumps(answer_as_served(model, body))
            assert not refused, f"{body} was answered: {answer[:500]}"
        except MlflowException as exc:
            answer = exc.message  # what the server's 400 says
            assert exc.error_code == "INVALID_PARAMETER_VALUE", answer[:2000]
        assert secret not in answer, (body, answer[:2000])
    assert tree(cwd) == before and not list(temporary.iterdir())


class MlflowServer:
    def __init__(self, process: subprocess.Popen, url: str, log: Path):
        self.process, self.url, self.log = process, url, log

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"mlflow models serve exited ({self.process.returncode}):\n{self.output()}")
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"mlflow models serve not ready after {timeout:.0f} s:\n{self.output()}")

    def post(self, body: dict) -> tuple[int, dict]:
        request = urllib.request.Request(f"{self.url}/invocations", data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@contextmanager
def mlflow_models_serve(model_uri: str, folder: Path):
    """`mlflow models serve -m <model_uri> --env-manager local` on a free loopback port, in its own process
    group (MLflow starts uvicorn under it), stopped with that group on exit."""
    port = free_port()
    bin_dir = Path(sys.executable).parent  # mlflow runs `uvicorn` from PATH
    env = {**os.environ, **QUIET_SERVER_ENV, "MLFLOW_TRACKING_URI": f"sqlite:///{folder}/mlruns/mlflow.db",
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONPATH": str(REPO),
           "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    log = folder / f"mlflow-serve-{port}.log"
    with open(log, "wb") as sink:
        process = subprocess.Popen([str(bin_dir / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager",
                                    "local", "--host", "127.0.0.1", "--port", str(port)], cwd=folder, env=env,
                                   stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    server = MlflowServer(process, f"http://127.0.0.1:{port}", log)
    try:
        yield server
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(30)

