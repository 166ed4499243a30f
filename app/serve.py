"""`deepsuite serve`: REST scoring on raw inputs for every pipeline, MLflow-style (`POST /invocations`).

The hardened HTTP front over the same request code as the logged MLflow model (`deepsuite.common.requests`,
which `mlflow models serve` runs through `deepsuite.common.mlflow_model`): this server adds what a socket
needs (per-read timeouts, a Host list, an optional bearer token, a body size and JSON depth bound) and takes
the request as a JSON object of the command's options, exactly the fields `deepsuite <command> --help`
lists for its pipeline, validated by the same pydantic model. It loads the run's `export/` folder and
calls the same pipeline methods as `deepsuite predict/generate/recommend/denoise`. Standard library HTTP
server, one model, one inference at a time. The response is `{"predictions": [...]}`, one object per
answer, what `deepsuite <command> --json` prints:

  {"inputs": [...], "top": 2}              -> the model's one command (predict, denoise, ...)
  {"prompt": "...", "max_tokens": 50}      -> e.g. a text-generation model's generate
  {"command": "predict", "inputs": [...]}  -> names the command (needed when a pipeline declares several)

File inputs are data, never paths (an image array or {"b64": ..., "name": ...}); files the command writes
come back base64-encoded; the rules are in `deepsuite.common.requests`. Bad JSON, unknown options or
unreadable inputs answer 400 with {"error": "..."}; the server keeps serving.
"""
from __future__ import annotations

import hmac
import json
import os
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Callable

from deepsuite.app import invoke
from deepsuite.common import requests
from deepsuite.common.errors import DeepsuiteError
from deepsuite.common.requests import BadRequest
from deepsuite.app.ui import url_for
from deepsuite.app.http_guard import (MAX_JSON_DEPTH, REQUEST_TIMEOUT_S, BoundedHTTPServer, allowed_hosts, host_name,
                                     json_depth)
from deepsuite.app.ports import ensure_port_free, exposure_warning

MAX_BODY_BYTES = 64 * 1024 * 1024
TOKEN_ENV = "DEEPSUITE_SERVE_TOKEN"  # when set, every request needs "Authorization: Bearer <it>"


class ModelService:
    """One exported model and its pipeline; `answer(payload)` runs one request under a lock."""

    def __init__(self, target: str, tracking_uri: str | None, store: Path):
        self.loaded = invoke.load(target, tracking_uri, store)
        self.pipeline = self.loaded.pipeline
        self.lock = threading.Lock()

    def describe(self) -> dict:
        manifest = self.loaded.export.manifest
        return {"pipeline": self.pipeline.name, "run_id": manifest.run_id, "preset": manifest.preset,
                "dataset": manifest.dataset, "commands": [c.name for c in self.pipeline.commands]}

    def answer(self, payload: Any) -> list[dict]:
        return requests.answer(self.pipeline, self._run, payload)

    def _run(self, command, options) -> list[dict]:
        with self.lock:
            return self.loaded.run(command, options)


# -- HTTP -----------------------------------------------------------------------------------------

def make_handler(service: ModelService, log: Callable[[str], None], hosts: set[str] | None = None,
                 timeout: float = REQUEST_TIMEOUT_S, token: str | None = None):
    class Handler(BaseHTTPRequestHandler):
        server_version = "deepsuite-serve"

        def setup(self):
            self.timeout = timeout  # read by StreamRequestHandler.setup: every socket read gives up after it
            super().setup()

        def parse_request(self) -> bool:
            if not super().parse_request():
                return False
            name = host_name(self.headers.get("Host") or "")
            if hosts is not None and name not in hosts:
                self._send(HTTPStatus.FORBIDDEN, {"error": f"Host {name!r} is not served here; start the server with "
                                                           "--allowed-hosts to accept it"})
                return False
            health = self.command == "GET" and self.path in ("/ping", "/health")  # says nothing: open to probes
            given = (self.headers.get("Authorization") or "").encode("utf-8", "surrogateescape")
            if token and not health and not hmac.compare_digest(given, f"Bearer {token}".encode()):
                self._send(HTTPStatus.UNAUTHORIZED, {"error": "this server needs \"Authorization: Bearer <token>\" "
                                                              f"(the value of {TOKEN_ENV} where it was started)"})
                return False
            return True

        def do_GET(self):
            if self.path in ("/ping", "/health"):
                self._send(HTTPStatus.OK, {"status": "ok"})
            elif self.path in ("/", "/version", "/info"):
                self._send(HTTPStatus.OK, service.describe())
            else:
                self._send(HTTPStatus.NOT_FOUND, {"error": f"no {self.path}; POST /invocations, GET /ping"})

        def do_POST(self):
            if self.path != "/invocations":
                self._send(HTTPStatus.NOT_FOUND, {"error": f"no {self.path}; POST JSON to /invocations"})
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > MAX_BODY_BYTES:
                self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE if length > 0 else HTTPStatus.BAD_REQUEST,
                           {"error": f"body must be JSON of at most {MAX_BODY_BYTES} bytes with a Content-Length"})
                return
            try:
                body = self.rfile.read(length)
            except TimeoutError:
                self.close_connection = True  # a client announcing more than it sends holds nothing for long
                self._send(HTTPStatus.REQUEST_TIMEOUT, {"error": f"no body byte for {timeout:g} s"})
                return
            if len(body) < length:
                self._send(HTTPStatus.BAD_REQUEST, {"error": f"body ended after {len(body)} of {length} bytes"})
                return
            try:
                payload = json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                self._send(HTTPStatus.BAD_REQUEST, {"error": f"malformed JSON: {exc}"})
                return
            except RecursionError:
                self._send(HTTPStatus.BAD_REQUEST, {"error": f"JSON nests deeper than {MAX_JSON_DEPTH} levels"})
                return
            if json_depth(payload) > MAX_JSON_DEPTH:
                self._send(HTTPStatus.BAD_REQUEST, {"error": f"JSON nests deeper than {MAX_JSON_DEPTH} levels"})
                return
            try:
                self._send(HTTPStatus.OK, {"predictions": service.answer(payload)})
            except (BadRequest, DeepsuiteError) as exc:
                self._send(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            except Exception as exc:  # noqa: BLE001 - a bug must not stop the server
                log(f"error: {type(exc).__name__}: {exc}")
                self._send(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"internal error: {type(exc).__name__}: {exc}"})

        def _send(self, status: HTTPStatus, body: dict) -> None:
            data = json.dumps(body).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format, *args):  # noqa: A002 - BaseHTTPRequestHandler's signature
            log(f"{self.address_string()} {format % args}")

    return Handler


def serve(target: str, host: str = "127.0.0.1", port: int = 5001, tracking_uri: str | None = None,
          store: Path = Path("mlruns"), echo: Callable[[str], None] = print, extra_hosts: str | None = None,
          timeout: float = REQUEST_TIMEOUT_S) -> int:
    """Load the model behind `target` and answer POST /invocations until Ctrl-C."""
    import signal
    import sys

    ensure_port_free(host, port, "the scoring server")
    service = ModelService(target, tracking_uri, store)
    try:
        token = os.environ.get(TOKEN_ENV) or None
        handler = make_handler(service, lambda line: print(line, file=sys.stderr), allowed_hosts(host, extra_hosts),
                               timeout, token)
        httpd = BoundedHTTPServer((host, port), handler)
    except OSError as exc:
        raise DeepsuiteError(f"cannot listen on {host}:{port} ({exc.strerror}); try another --port") from None
    url = url_for(host, port)
    info = service.describe()
    example = _example(service.pipeline)
    warning = None if token else exposure_warning(host, "the scoring server", "can send it requests (no "
                                                                           f"authentication: set {TOKEN_ENV})")
    echo(f"serving {info['pipeline']} (run {info['run_id']}) at {url}/invocations  (Ctrl-C to stop)"
         + (f"; requests need the bearer token in {TOKEN_ENV}" if token else "") + "\n"
         f"  try: curl -s {url}/invocations -H 'Content-Type: application/json'"
         + (f" -H \"Authorization: Bearer ${TOKEN_ENV}\"" if token else "") + f" -d '{example}'"
         + (f"\n{warning}" if warning else ""))
    sys.stdout.flush()
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        httpd.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        echo("stopped the scoring server")
    finally:
        httpd.server_close()
        signal.signal(signal.SIGTERM, previous)
    return 0


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _example(pipeline) -> str:
    """The first command's declared example body, for the curl hint printed at start."""
    for command in pipeline.commands:
        if command.example:
            return json.dumps(command.example)
    return '{"inputs": ["..."]}'
