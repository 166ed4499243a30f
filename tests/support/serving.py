"""`deepsuite serve` beside the CLI: start a scoring server on loopback, post JSON, compare with `--json`.

Each pipeline's test file serves the model its module-scoped smoke run already trained, so no training is
added. The server starts in the background while the test runs the CLI on the same input.
"""
from __future__ import annotations

import base64
import io
import json
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from common.ui import free_port
from tests.support.ui_runs import start_cli

TIMING = ("seconds",)  # wall-clock fields: the only ones two identical calls may disagree on


class ScoringServer:
    def __init__(self, process, url: str):
        self.process, self.url, self.ready = process, url, False

    def post(self, body: dict) -> dict:
        """POST /invocations; returns the predictions, failing with the server's answer and log otherwise."""
        if not self.ready:
            self.process.wait_for("Ctrl-C to stop", timeout=300)
            self.ready = True
        request = urllib.request.Request(f"{self.url}/invocations", data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return json.loads(response.read())["predictions"]
        except urllib.error.HTTPError as error:
            raise AssertionError(f"{error.code} {error.read().decode()}\n{self.process.output[-3000:]}") from None


@contextmanager
def scoring_server(model: str, cwd: Path, backend: str = "tensorflow", hide_tensorflow: bool = False):
    """`deepsuite serve <model>` on a free loopback port, stopped on exit."""
    port = free_port()
    process = start_cli(["serve", model, "--port", str(port)], cwd=cwd, backend=backend,
                        hide_tensorflow=hide_tensorflow)
    try:
        yield ScoringServer(process, f"http://127.0.0.1:{port}")
    finally:
        process.kill()


def json_lines(text: str) -> list[dict]:
    """The answers `deepsuite <command> --json` printed, one JSON object a line."""
    return [json.loads(line) for line in text.strip().splitlines()]


def without(answers: list[dict], *keys: str) -> list[dict]:
    """Answers without timing fields and the given keys (those compared separately)."""
    drop = set(TIMING) | set(keys)
    return [{k: v for k, v in answer.items() if k not in drop} for answer in answers]


def b64_pixels(value: dict) -> np.ndarray:
    """An image the server sent back as {"b64": ...}, as an array."""
    with Image.open(io.BytesIO(base64.b64decode(value["b64"]))) as image:
        return np.asarray(image)


def file_pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)
