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
import uuid
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from deepsuite.app.ui import free_port
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

    def post_error(self, body: dict) -> dict:
        """POST a request that must fail; returns {"status": code, "error": message}."""
        try:
            answer = self.post(body)
        except AssertionError as failure:
            code, _, rest = str(failure).partition(" ")
            return {"status": int(code), "error": json.loads(rest.split("\n", 1)[0])["error"]}
        raise AssertionError(f"expected an error for {body}, got {answer}")


@contextmanager
def scoring_server(model: str, cwd: Path, backend: str = "tensorflow", hide_tensorflow: bool = False,
                   env: dict[str, str] | None = None):
    """`deepsuite serve <model>` on a free loopback port, stopped on exit."""
    port = free_port()
    process = start_cli(["serve", model, "--port", str(port)], cwd=cwd, backend=backend,
                        hide_tensorflow=hide_tensorflow, env=env)
    try:
        yield ScoringServer(process, f"http://127.0.0.1:{port}")
    finally:
        process.kill()


def tree(folder: Path) -> list[str]:
    """Every path under `folder` (the server's working folder), as text, sorted."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def assert_confined(server: "ScoringServer", cwd: Path, scratch: Path, bodies, refused: bool = False) -> None:
    """Requests that name a file on the server never get its content back, whatever they are answered, and
    leave the server's working folder as it was. `bodies(path)` gives the requests naming `path`; they are
    sent for a text file holding a marker and for a real image. With `refused`, every one must be refused
    (a model that takes files takes their data, so a path is never predicted on)."""
    secret = f"MARKER-{uuid.uuid4().hex}"
    marker = scratch / "secret.txt"
    marker.write_text(f"{secret}\n{secret}\n", encoding="utf-8")
    picture = scratch / "secret.png"
    Image.fromarray(np.tile(np.arange(0, 256, 8, dtype=np.uint8), (32, 1))).save(picture)
    server.post_error({"command": "no-such-command"})  # wait until it serves, then look at its folder
    before = tree(cwd)
    for body in [*bodies(str(marker)), *bodies(str(picture))]:
        try:
            answer = json.dumps(server.post(body))
            assert not refused, f"{body} was answered: {answer[:500]}"
        except AssertionError as failure:  # a 4xx with the server's log: neither may hold the file's content
            answer = str(failure)
            assert not refused or answer.startswith("4"), answer[:2000]
        assert secret not in answer, (body, answer[:2000])
    assert tree(cwd) == before


def b64_file(path) -> dict:
    """A file as a scoring server takes it: its bytes, base64-encoded, and its name (never its path)."""
    path = Path(path)
    return {"b64": base64.b64encode(path.read_bytes()).decode("ascii"), "name": path.name}


def json_lines(text: str) -> list[dict]:
    """The answers `deepsuite <command> --json` printed, one JSON object a line."""
    return [json.loads(line) for line in text.strip().splitlines()]


def without(answers: list[dict], *keys: str) -> list[dict]:
    """Answers without timing fields and the given keys (those compared separately)."""
    drop = set(TIMING) | set(keys)
    return [{k: v for k, v in answer.items() if k not in drop} for answer in answers]


def same_answers(got, expected, tolerance: float = 1.5e-4) -> bool:
    """Equal answers, numbers within `tolerance`: the server predicts a request's inputs as one batch and the CLI
    may batch them otherwise, and oneDNN's float sums depend on the batch (a probability differed in its 7th
    digit); some answers round to 4 decimals, so one step of that rounding is allowed too. Strings, labels,
    keys, lengths and integers must match exactly."""
    if isinstance(got, dict) and isinstance(expected, dict):
        return got.keys() == expected.keys() and all(same_answers(got[k], expected[k], tolerance) for k in got)
    if isinstance(got, list) and isinstance(expected, list):
        return len(got) == len(expected) and all(same_answers(a, b, tolerance) for a, b in zip(got, expected))
    if isinstance(got, float) or isinstance(expected, float):
        return isinstance(got, (int, float)) and isinstance(expected, (int, float)) and not isinstance(got, bool) \
            and abs(got - expected) <= tolerance
    return type(got) is type(expected) and got == expected


def b64_pixels(value: dict) -> np.ndarray:
    """An image the server sent back as {"b64": ...}, as an array."""
    with Image.open(io.BytesIO(base64.b64decode(value["b64"]))) as image:
        return np.asarray(image)


def file_pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)
