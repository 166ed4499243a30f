"""`deepsuite serve`: REST scoring on raw inputs for every pipeline, MLflow-style (`POST /invocations`).

Why not only `mlflow models serve`? The logged MLflow model (the `model/` artifact, Keras flavour)
takes the exact tensor the network takes: fine for images, useless for recommendation by user id or for
text generation, which are loops around the network. This server loads the run's `export/` folder
and calls the same pipeline methods as `deepsuite predict/generate/recommend/denoise`, so every
pipeline answers on its raw inputs. Standard library HTTP server, one model, one inference at a time.

Request (JSON object, `Content-Type: application/json`); the response is `{"predictions": [...]}`,
one object per answer, exactly what `deepsuite <command> --json` prints:

  {"inputs": [...], "options": {...}}     -> predict. Each input is a string (text for sentiment, a
                                             file path on the server for image pipelines), a nested
                                             list of numbers (an HxW or HxWxC image array, uint8 0-255
                                             or floats 0-1), or {"b64": "<base64 of a PNG/JPEG file>"}.
                                             "instances" is accepted for "inputs" (MLflow's name).
  {"prompt": "...", "max_tokens": 50, ...} -> generate (options as in `deepsuite generate`)
  {"user": "42", "top": 10}                -> recommend
  {"command": "denoise", "inputs": [...]}  -> denoise; output images come back as {"b64": ...}

Options may also sit at the top level. Bad JSON, unknown options or unreadable inputs answer 400
with {"error": "..."}; the server keeps serving.
"""
from __future__ import annotations

import base64
import binascii
import json
import tempfile
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import numpy as np

from deepsuite.common.errors import DeepsuiteError
from deepsuite.app.ui import ensure_port_free, url_for

MAX_BODY_BYTES = 64 * 1024 * 1024
COMMANDS = ("predict", "generate", "recommend", "denoise")
CLI_ONLY = {"handler", "command_name", "command", "model", "tracking_uri", "store", "debug", "json", "inputs"}
SERVER_SIDE = {"output"}  # a path on the server: set by the server, never by a client


class BadRequest(Exception):
    """The client's request is wrong: answered with 400 and this message."""


class ModelService:
    """One exported model and its pipeline; `answer(payload)` runs one request under a lock."""

    def __init__(self, target: str, tracking_uri: str | None, store: Path):
        from deepsuite.app import invoke as predict, registry

        self.folder = predict.locate_export(target, tracking_uri, store)
        self.model, self.metadata = predict.load_export(self.folder)
        self.pipeline = registry.get(self.metadata["pipeline"])
        self.info = dict(self.metadata.get("metadata", {}), export_dir=str(self.folder))
        self.lock = threading.Lock()

    def describe(self) -> dict:
        return {"pipeline": self.pipeline.name, "run_id": self.metadata.get("run_id"),
                "preset": self.metadata.get("preset"), "dataset": self.metadata.get("dataset"),
                "commands": [c for c in COMMANDS if _overrides(self.pipeline, c)]}

    def answer(self, payload: Any) -> list[dict]:
        if isinstance(payload, list):
            payload = {"inputs": payload}
        if not isinstance(payload, dict):
            raise BadRequest(f"expected a JSON object such as {{\"inputs\": [...]}}, got {type(payload).__name__}")
        payload = dict(payload)
        if "instances" in payload and "inputs" not in payload:
            payload["inputs"] = payload.pop("instances")
        command = payload.pop("command", None) or _infer_command(payload)
        if command not in COMMANDS:
            raise BadRequest(f"unknown command {command!r}; allowed: {', '.join(COMMANDS)}")
        if not _overrides(self.pipeline, command):
            raise BadRequest(f"pipeline {self.pipeline.name!r} does not answer {command!r} requests")
        options = payload.pop("options", {}) or {}
        if not isinstance(options, dict):
            raise BadRequest("\"options\" must be a JSON object")
        inputs = payload.pop("inputs", None)
        want_images = bool(payload.pop("output", options.pop("output", False)))
        options = {**payload, **options}
        with tempfile.TemporaryDirectory(prefix="deepsuite-serve-") as tmp:
            workdir = Path(tmp)
            labels: dict[str, str] = {}
            call = _with_defaults(command, options)
            if command in ("predict", "denoise"):
                call["inputs"] = _materialise_inputs(inputs, workdir, labels)
            if command == "denoise" or (command == "predict" and want_images):
                (workdir / "out").mkdir()
                call["output"] = workdir / "out"  # files written there come back as {"b64": ...}
            with self.lock:
                if command == "predict":
                    results = self.pipeline.predict(self.model, call.pop("inputs"), self.info, call)
                else:
                    results = getattr(self.pipeline, command)(self.model, self.info, call)
            return [_portable(result, workdir, labels) for result in results]


def _overrides(pipeline, command: str) -> bool:
    from deepsuite.common.pipeline import Pipeline

    return getattr(type(pipeline), command) is not getattr(Pipeline, command)


def _infer_command(payload: dict) -> str:
    if "prompt" in payload:
        return "generate"
    if "user" in payload or "users" in payload:
        return "recommend"
    if "inputs" in payload:
        return "predict"
    raise BadRequest("say what to do: {\"inputs\": [...]} (predict), {\"prompt\": ...} (generate), "
                     "{\"user\": ...} (recommend) or {\"command\": \"denoise\", \"inputs\": [...]}")


def _defaults(command: str) -> dict[str, Any]:
    """The option defaults of `deepsuite <command>`, read from the CLI parser (one source of truth)."""
    from deepsuite.app.cli import build_parser

    positional = ["INPUT"] if command in ("predict", "denoise") else []
    required = ["--user", "-"] if command == "recommend" else []
    namespace = vars(build_parser().parse_args([command, "MODEL", *positional, *required]))
    return {k: v for k, v in namespace.items() if k not in CLI_ONLY}


def _with_defaults(command: str, options: dict) -> dict:
    defaults = _defaults(command)
    if command == "recommend" and "users" in options and "user" not in options:
        options = {**options, "user": options.pop("users")}
    allowed = set(defaults) - SERVER_SIDE
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise BadRequest(f"unknown option(s) {', '.join(map(repr, unknown))} for {command}; "
                         f"allowed: {', '.join(sorted(allowed)) or 'none'}")
    if command == "recommend" and "user" not in options:
        raise BadRequest("recommend needs \"user\": a user id as in the ratings data")
    call = dict(defaults)
    for key, value in options.items():
        default = defaults[key]
        if value is not None and default is not None and not isinstance(default, bool):
            try:
                value = type(default)(value)
            except (TypeError, ValueError):
                raise BadRequest(f"option {key!r}: {value!r} is not a {type(default).__name__}") from None
        call[key] = value
    return call


def _materialise_inputs(inputs: Any, workdir: Path, labels: dict[str, str]) -> list[str]:
    """Strings pass through; image arrays and base64 files become files the pipeline can read."""
    if inputs is None:
        raise BadRequest("missing \"inputs\": a list of strings, image arrays or {\"b64\": ...} files")
    if not isinstance(inputs, list) or (inputs and isinstance(inputs[0], (int, float))):
        inputs = [inputs]  # one image array or one string
    if not inputs:
        raise BadRequest("\"inputs\" is empty")
    paths = []
    for index, item in enumerate(inputs):
        if isinstance(item, str):
            paths.append(item)
            continue
        path = workdir / f"input-{index}.png"
        if isinstance(item, dict) and "b64" in item:
            try:
                path.write_bytes(base64.b64decode(item["b64"], validate=True))
            except (binascii.Error, TypeError, ValueError):
                raise BadRequest(f"inputs[{index}].b64 is not valid base64") from None
        elif isinstance(item, list):
            _save_array(item, path, index)
        else:
            raise BadRequest(f"inputs[{index}]: expected a string, an image array or {{\"b64\": ...}}, "
                             f"got {type(item).__name__}")
        labels[str(path)] = f"inputs[{index}]"
        paths.append(str(path))
    return paths


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


def _portable(value: Any, workdir: Path, labels: dict[str, str]) -> Any:
    """JSON-able copy of a result: numpy -> lists, temp input paths -> inputs[i], output files -> b64."""
    if isinstance(value, dict):
        return {str(k): _portable(v, workdir, labels) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_portable(v, workdir, labels) for v in value]
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
            return {"b64": base64.b64encode(path.read_bytes()).decode("ascii"), "name": path.name}
        for temporary, label in labels.items():  # e.g. a "summary" line naming the temp files
            text = text.replace(temporary, label)
        return text.replace(f"{workdir}/out/", "").replace(str(workdir), "")
    return value


# -- HTTP -----------------------------------------------------------------------------------------

def make_handler(service: ModelService, log: Callable[[str], None]):
    class Handler(BaseHTTPRequestHandler):
        server_version = "deepsuite-serve"

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
            body = self.rfile.read(length)
            try:
                payload = json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                self._send(HTTPStatus.BAD_REQUEST, {"error": f"malformed JSON: {exc}"})
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
          store: Path = Path("mlruns"), echo: Callable[[str], None] = print) -> int:
    """Load the model behind `target` and answer POST /invocations until Ctrl-C."""
    import signal
    import sys

    ensure_port_free(host, port, "the scoring server")
    service = ModelService(target, tracking_uri, store)
    try:
        httpd = ThreadingHTTPServer((host, port), make_handler(service, lambda line: print(line, file=sys.stderr)))
    except OSError as exc:
        raise DeepsuiteError(f"cannot listen on {host}:{port} ({exc.strerror}); try another --port") from None
    httpd.daemon_threads = True
    url = url_for(host, port)
    info = service.describe()
    example = _example(info["commands"])
    echo(f"serving {info['pipeline']} (run {info['run_id']}) at {url}/invocations  (Ctrl-C to stop)\n"
         f"  try: curl -s {url}/invocations -H 'Content-Type: application/json' -d '{example}'")
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


def _example(commands: list[str]) -> str:
    if "predict" in commands:
        return '{"inputs": ["<text, or an image path on this machine>"]}'
    if "generate" in commands:
        return '{"prompt": "Once upon a time", "max_tokens": 50}'
    if "recommend" in commands:
        return '{"user": "1", "top": 5}'
    return '{"command": "denoise", "inputs": [{"b64": "<base64 PNG>"}]}'
