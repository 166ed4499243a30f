"""`deepsuite serve`: REST scoring on raw inputs for every pipeline, MLflow-style (`POST /invocations`).

Why not only `mlflow models serve`? The logged MLflow model (the `model/` artifact, Keras flavour)
takes the exact tensor the network takes: fine for images, useless for recommendation by user id or for
text generation, which are loops around the network. This server loads the run's `export/` folder
and calls the same pipeline methods as `deepsuite predict/generate/recommend/denoise`, so every
pipeline answers on its raw inputs. Standard library HTTP server, one model, one inference at a time.

Request (JSON object, `Content-Type: application/json`): the options of the model's command, exactly
the fields `deepsuite <command> --help` lists for its pipeline, validated by the same pydantic model.
The response is `{"predictions": [...]}`, one object per answer, what `deepsuite <command> --json` prints:

  {"inputs": [...], "top": 2}              -> the model's one command (predict, denoise, ...)
  {"prompt": "...", "max_tokens": 50}      -> e.g. a text-generation model's generate
  {"command": "predict", "inputs": [...]}  -> names the command (needed when a pipeline declares several)

Options may also sit in an "options" object. File inputs are data, never paths: a nested list of numbers
(an HxW or HxWxC image array, uint8 0-255 or floats 0-1) or {"b64": "<base64 of a PNG/JPEG/DICOM file>",
"name": "scan.png"} (the name, reduced to a base name, only names the outputs). Text inputs are the texts.
"instances" is accepted for "inputs" (MLflow's name). The server opens no file a request names and writes
only into a per-request temporary folder it deletes: a command that writes files (denoise; Grad-CAM
overlays when the request says "output": true) has them sent back as {"b64": ..., "name": ...}. Bad
JSON, unknown options or unreadable inputs answer 400 with {"error": "..."}; the server keeps serving.
"""
from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
import tempfile
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Callable

import numpy as np

from deepsuite.app import invoke
from deepsuite.common.commands import Command
from deepsuite.common.errors import DeepsuiteError
from deepsuite.app.ui import url_for
from deepsuite.app.http_guard import (MAX_JSON_DEPTH, REQUEST_TIMEOUT_S, BoundedHTTPServer, allowed_hosts, host_name,
                                     json_depth)
from deepsuite.app.ports import ensure_port_free, exposure_warning

MAX_BODY_BYTES = 64 * 1024 * 1024
TOKEN_ENV = "DEEPSUITE_SERVE_TOKEN"  # when set, every request needs "Authorization: Bearer <it>"


class BadRequest(Exception):
    """The client's request is wrong: answered with 400 and this message."""


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

    def command_for(self, payload: dict) -> Command:
        name = payload.pop("command", None)
        commands = self.pipeline.commands
        if name is None:
            if len(commands) == 1:
                return commands[0]
            offered = ", ".join(c.name for c in commands) or "none"
            raise BadRequest(f"say which command: \"command\" is one of {offered}")
        try:
            return self.pipeline.command(str(name))
        except DeepsuiteError as exc:
            raise BadRequest(str(exc)) from None

    def answer(self, payload: Any) -> list[dict]:
        if isinstance(payload, list):
            payload = {"inputs": payload}
        if not isinstance(payload, dict):
            raise BadRequest(f"expected a JSON object such as {{\"inputs\": [...]}}, got {type(payload).__name__}")
        payload = dict(payload)
        command = self.command_for(payload)
        nested = payload.pop("options", {}) or {}
        if not isinstance(nested, dict):
            raise BadRequest("\"options\" must be a JSON object")
        options = {key: value for key, value in {**payload, **nested}.items() if value is not None}  # null: default
        inputs_name, output_name = command.field_with_role("inputs"), command.field_with_role("output")
        local = command.field_with_role("local_files")
        if local and local in options:
            raise BadRequest(f"{local!r}: the server reads no files; send the data itself"
                             + (f" in {inputs_name!r}" if inputs_name else ""))
        if inputs_name and "instances" in options and inputs_name not in options:
            options[inputs_name] = options.pop("instances")
        want_files = False
        if output_name and output_name in options:
            want_files = options.pop(output_name)
            if not isinstance(want_files, bool):
                raise BadRequest(f"{output_name!r}: send true to get the files back; the server chooses where "
                                 "to write them")
        with tempfile.TemporaryDirectory(prefix="deepsuite-serve-") as tmp:
            workdir = Path(tmp)
            labels: dict[str, str] = {}
            if inputs_name and inputs_name in options:
                options[inputs_name] = _inputs(options[inputs_name], command.inputs_are_files, workdir, labels)
            send_files = command.writes == "always" or want_files
            if output_name:  # a command that may write files writes them here, never in the server's folder
                (workdir / "out").mkdir()
                options[output_name] = workdir / "out"  # sent back as {"b64": ...} when asked for
            validated = command.validate(options, name_of=repr)
            with self.lock:
                results = self.loaded.run(command, validated)
            return [_portable(result, workdir, labels, send_files) for result in results]


def _inputs(inputs: Any, files: bool, workdir: Path, labels: dict[str, str]) -> list:
    """One input or a list; for file commands, image arrays and base64 files become files to read."""
    if not isinstance(inputs, list) or (inputs and isinstance(inputs[0], (int, float))):
        inputs = [inputs]  # one image array or one string
    if not inputs:
        raise BadRequest("\"inputs\" is empty")
    return _materialise_inputs(inputs, workdir, labels) if files else inputs


def _materialise_inputs(inputs: Any, workdir: Path, labels: dict[str, str]) -> list[str]:
    """Strings pass through; image arrays and base64 files become files the pipeline can read."""
    paths = []
    for index, item in enumerate(inputs):
        if isinstance(item, str):
            raise BadRequest(f"inputs[{index}] is a string: the server takes the file's data, not a path on the "
                             "server; send {\"b64\": \"<base64 of the file>\", \"name\": \"scan.png\"} or a "
                             "pixel array")
        path = workdir / f"input-{index}.png"
        if isinstance(item, dict) and "b64" in item:
            path = workdir / f"{index}" / _safe_name(item.get("name"), index)  # the name, never a place
            path.parent.mkdir()
            try:
                path.write_bytes(base64.b64decode(item["b64"], validate=True))
            except (binascii.Error, TypeError, ValueError):
                raise BadRequest(f"inputs[{index}].b64 is not valid base64") from None
        elif isinstance(item, list):
            _save_array(item, path, index)
        else:
            raise BadRequest(f"inputs[{index}]: expected an image array or {{\"b64\": ...}}, "
                             f"got {type(item).__name__}")
        labels[str(path)] = f"inputs[{index}]"
        paths.append(str(path))
    return paths


def _safe_name(name: Any, index: int) -> str:
    """A client's file name reduced to a plain base name (outputs are named after it), else input-<i>.png."""
    if isinstance(name, str):
        base = "".join(c for c in name.replace("\\", "/").rsplit("/", 1)[-1] if c.isalnum() or c in "._-")
        if base.strip(".") and len(base) <= 120:
            return base
    return f"input-{index}.png"


def _save_array(item: list, path: Path, index: int) -> None:
    from PIL import Image

    try:
        array = np.asarray(item, dtype=np.float64)
    except (TypeError, ValueError):
        raise BadRequest(f"inputs[{index}] is not a rectangular array of numbers") from None
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4))) or min(array.shape[:2]) < 1:
        raise BadRequest(f"inputs[{index}]: an image array is HxW or HxWxC (C = 1, 3 or 4), got shape "
                         f"{list(array.shape)}")
    if not np.isfinite(array).all() or array.min() < 0 or array.max() > 255:
        raise BadRequest(f"inputs[{index}]: pixel values must be 0-255 (or floats 0-1)")
    if array.max() <= 1.0 and not np.equal(np.mod(array, 1), 0).all():
        array = array * 255.0
    Image.fromarray(np.round(array).astype(np.uint8)).save(path)


def _portable(value: Any, workdir: Path, labels: dict[str, str], send_files: bool = True) -> Any:
    """JSON-able copy of a result: numpy -> lists, temp input paths -> inputs[i], output files -> b64."""
    if isinstance(value, dict):
        return {str(k): _portable(v, workdir, labels, send_files) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_portable(v, workdir, labels, send_files) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (Path, str)):
        text = str(value)
        if text in labels:
            return labels[text]
        path = Path(text)
        if text.startswith(str(workdir)) and path.is_file():
            if not send_files:
                return path.name  # written to the request's temporary folder, not asked for: not sent
            return {"b64": base64.b64encode(path.read_bytes()).decode("ascii"), "name": path.name}
        for temporary, label in labels.items():  # e.g. a "summary" line naming the temp files
            text = text.replace(temporary, label)
        return text.replace(f"{workdir}/out/", "").replace(str(workdir), "")
    return value


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
