"""`deepsuite serve`: a real HTTP scoring server on loopback, raw inputs in, predictions out.

The server runs under JAX with TensorFlow hidden (the GPU machine's situation) and loads the model by
its registry alias, so one start covers models:/ resolution, export loading and the no-TF path.
"""
from __future__ import annotations

import base64
import io
import json
import socket
import time
import urllib.error
import urllib.request

import mlflow
import numpy as np
import pytest
from PIL import Image

from deepsuite.common.data import labeled_images
from deepsuite.app.ui import free_port
from tests.support.data import needs_fashion_mnist
from tests.support.cli import run_cli
from tests.support.ui_runs import start_cli, two_finished_runs

pytestmark = needs_fashion_mnist
CLASSES = labeled_images.FASHION_MNIST_CLASSES
MODEL_NAME = "fashion-classifier"
TOKEN = "t0ken-for-the-test"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return two_finished_runs(tmp_path_factory)


@pytest.fixture(scope="module")
def champion(store):
    """Register the newest run's model as models:/fashion-classifier@champion; return its run id."""
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store}/mlruns/mlflow.db")
    experiment = client.get_experiment_by_name("image-classification")
    run = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"])[0]
    if not client.search_registered_models(f"name = '{MODEL_NAME}'"):
        client.create_registered_model(MODEL_NAME)
    version = client.create_model_version(MODEL_NAME, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    client.set_registered_model_alias(MODEL_NAME, "champion", version.version)
    return run.info.run_id


@pytest.fixture(scope="module")
def server(store, champion):
    port = free_port()
    process = start_cli(["serve", f"models:/{MODEL_NAME}@champion", "--port", str(port), "--request-timeout", "3"],
                        cwd=store, env={"DEEPSUITE_SERVE_TOKEN": TOKEN},
                        backend="jax", hide_tensorflow=True)
    try:
        process.wait_for("Ctrl-C to stop", timeout=300)
        yield process, f"http://127.0.0.1:{port}"
    finally:
        process.kill()


def post(url: str, body: bytes | dict, content_type: str = "application/json", host: str | None = None,
         token: str | None = TOKEN) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": content_type, **({"Host": host} if host else {}),
               **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(f"{url}/invocations", data=data, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def test_images():
    data = labeled_images.load("fashion_mnist")
    return data.test_x[:2, ..., 0], data.test_y[:2]  # two 28x28 uint8 images


def test_image_arrays_are_classified(server, champion, test_images):
    process, url = server
    images, _ = test_images
    status, body = post(url, {"inputs": [images[0].tolist(), (images[1] / 255.0).tolist()]})
    assert status == 200, body
    predictions = body["predictions"]
    assert [p["input"] for p in predictions] == ["inputs[0]", "inputs[1]"]
    for p in predictions:
        assert p["label"] in CLASSES and 0.0 <= p["probability"] <= 1.0 and len(p["top"]) == 3
    described = urllib.request.Request(f"{url}/", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(described, timeout=30) as response:
        info = json.loads(response.read())
    assert info["pipeline"] == "image-classification" and info["run_id"] == champion
    assert f"serving image-classification (run {champion})" in process.output


def test_image_file_as_base64_with_options(server, test_images):
    _, url = server
    png = io.BytesIO()
    Image.fromarray(np.kron(test_images[0][0], np.ones((3, 3), np.uint8))).save(png, format="PNG")  # 84x84
    status, body = post(url, {"instances": [{"b64": base64.b64encode(png.getvalue()).decode()}],
                              "options": {"top": 2}})
    assert status == 200, body
    assert len(body["predictions"]) == 1 and len(body["predictions"][0]["top"]) == 2


def test_bad_requests_get_400_and_the_server_keeps_serving(server, test_images):
    process, url = server
    status, body = post(url, b'{"inputs": [[1, 2], ')
    assert status == 400 and body["error"].startswith("malformed JSON")
    status, body = post(url, b"[" * 100_000 + b"]" * 100_000)
    assert status == 400 and body["error"] == "JSON nests deeper than 32 levels"
    status, body = post(url, {"inputs": [test_images[0][0].tolist()]}, host="rebound.example.com:5001")
    assert status == 403 and "Host 'rebound.example.com' is not served here" in body["error"]
    for wrong in (None, "guess"):  # DEEPSUITE_SERVE_TOKEN is set where the server started
        status, body = post(url, {"inputs": [test_images[0][0].tolist()]}, token=wrong)
        assert status == 401 and "Authorization: Bearer <token>" in body["error"] and TOKEN not in body["error"]
    assert "requests need the bearer token in DEEPSUITE_SERVE_TOKEN" in process.output and TOKEN not in process.output
    status, body = post(url, {"inputs": [test_images[0][0].tolist()], "options": {"colour": "red"}})
    assert status == 400 and "unknown option 'colour' for predict" in body["error"] and "'top'" in body["error"]
    status, body = post(url, {"inputs": [[[1, 2, 3], [4, 5]]]})
    assert status == 400 and "inputs[0]" in body["error"]
    status, body = post(url, {"inputs": [[[300] * 4] * 4]})
    assert status == 400 and "0-255" in body["error"]
    status, body = post(url, {"prompt": "hello"})  # a model with one command: everything is its options
    assert status == 400 and "unknown option 'prompt' for predict" in body["error"]
    status, body = post(url, {"command": "generate", "prompt": "hello"})
    assert status == 400 and "does not support `deepsuite generate` (it offers: predict)" in body["error"]
    status, body = post(url, {"inputs": ["/etc/hostname"]})  # a path on the server is never opened
    assert status == 400 and "inputs[0] is a string: the server takes the file's data, not a path" in body["error"]
    with urllib.request.urlopen(f"{url}/ping", timeout=30) as response:
        assert response.status == 200
    status, body = post(url, {"inputs": [test_images[0][0].tolist()]})
    assert status == 200 and body["predictions"][0]["label"] in CLASSES
    assert process.process.poll() is None


def test_unknown_model_and_busy_port_are_explained(store):
    port = free_port()
    jax = {"backend": "jax", "hide_tensorflow": True}  # these fail before any model loads: skip TF's import
    unknown_run = run_cli(["serve", "0" * 32, "--port", str(port)], cwd=store, **jax)
    assert unknown_run.code == 2 and "no run '" + "0" * 32 in unknown_run.err
    unknown_alias = run_cli(["serve", f"models:/{MODEL_NAME}@nobody", "--port", str(port)], cwd=store, **jax)
    assert unknown_alias.code == 2 and "no registered model" in unknown_alias.err
    nonsense = run_cli(["serve", "not-a-model", "--port", str(port)], cwd=store, **jax)
    assert nonsense.code == 2 and "neither a model file/folder" in nonsense.err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        result = run_cli(["serve", "0" * 32, "--port", str(taken)], cwd=store)
    assert result.code == 2 and f"port {taken} on 127.0.0.1 is already in use" in result.err


def test_idle_and_trickling_clients_are_dropped_and_the_server_keeps_serving(server, test_images):
    process, url = server
    port = int(url.rsplit(":", 1)[1])
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as idle:  # connects, never says anything
        assert idle.recv(1024) == b""  # closed by the server after its 3 s request timeout
    with socket.create_connection(("127.0.0.1", port), timeout=60) as slow:  # announces 1000 bytes, sends 1
        slow.sendall(b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Length: 1000\r\n\r\n{")
        reply = b""
        while chunk := slow.recv(4096):  # until the server closes the connection
            reply += chunk
    assert reply.split(b"\r\n", 1)[0].endswith(b"408 Request Timeout") and b"no body byte for 3 s" in reply
    assert time.monotonic() - started < 30
    status, body = post(url, {"inputs": [test_images[0][0].tolist()]})
    assert status == 200 and body["predictions"][0]["label"] in CLASSES and process.process.poll() is None


def test_ctrl_c_stops_the_server(server):
    process, _ = server
    assert process.interrupt() == 0
    assert "stopped the scoring server" in process.output

