"""A scoring request, answered by a pipeline's inference commands: the one code path behind `deepsuite serve`
and the MLflow model (`deepsuite.common.mlflow_model`, what `mlflow models serve` runs).

Two shapes come in. `deepsuite serve` takes a JSON object of the command's options (`answer`):

  {"inputs": [...], "top": 2}              -> the model's one command (predict, denoise, ...)
  {"prompt": "...", "max_tokens": 50}      -> e.g. a text-generation model's generate
  {"command": "predict", "inputs": [...]}  -> names the command (needed when a pipeline declares several)

Options may also sit in an "options" object; "instances" is accepted for "inputs" (MLflow's name). The MLflow
model takes rows and params (`answer_rows`): `{"inputs": [row, ...], "params": {"top": 2}}`, where a row is
what fills the command's `row_field` (an image, a text, a prompt, a user id).

Whichever the shape, the same rules hold. File inputs are data, never paths: a nested list of numbers (an HxW
or HxWxC image array, uint8 0-255 or floats 0-1) or {"b64": "<base64 of a PNG/JPEG/DICOM file>", "name":
"scan.png"} (the name, reduced to a base name, only names the outputs); a string is refused. Text inputs are
the texts. No file a request names is opened, and files are written only into a per-request temporary folder
that is deleted before the answer leaves: a command that writes files (denoise; Grad-CAM overlays when the
request says "output": true) has them sent back as {"b64": ..., "name": ...}. Local-file options (a CLI's
`--files`) are refused. The options' own limits (max_tokens, tile, top, ...) are checked by their models and
the image readers (pixels), so every front end enforces them.
"""
from __future__ import annotations

import base64
import binascii
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from deepsuite.common.commands import Command, Options
from deepsuite.common.data.images import MAX_PIXELS
from deepsuite.common.errors import DeepsuiteError

Run = Callable[[Command, Options], list]  # runs a command's handler on validated options


class BadRequest(Exception):
    """The client's request is wrong: a server answers 400 with this message."""


def command_for(pipeline, payload: dict) -> Command:
    """The command `payload` names (popping "command"), or the pipeline's only one."""
    name = payload.pop("command", None)
    commands = pipeline.commands
    if name is None:
        if len(commands) == 1:
            return commands[0]
        offered = ", ".join(c.name for c in commands) or "none"
        raise BadRequest(f"say which command: \"command\" is one of {offered}")
    try:
        return pipeline.command(str(name))
    except DeepsuiteError as exc:
        raise BadRequest(str(exc)) from None


def answer(pipeline, run: Run, payload: Any) -> list[dict]:
    """Answer one `deepsuite serve` request: validate, materialise file inputs in a temporary folder, run."""
    if isinstance(payload, list):
        payload = {"inputs": payload}
    if not isinstance(payload, dict):
        raise BadRequest(f"expected a JSON object such as {{\"inputs\": [...]}}, got {type(payload).__name__}")
    payload = dict(payload)
    command = command_for(pipeline, payload)
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
    with tempfile.TemporaryDirectory(prefix="deepsuite-request-") as tmp:
        workdir = Path(tmp)
        labels: dict[str, str] = {}
        if inputs_name and inputs_name in options:
            options[inputs_name] = _inputs(options[inputs_name], command.inputs_are_files, workdir, labels)
        send_files = command.writes == "always" or want_files
        if output_name:  # a command that may write files writes them here, never in the server's folder
            (workdir / "out").mkdir()
            options[output_name] = workdir / "out"  # sent back as {"b64": ...} when asked for
        validated = command.validate(options, name_of=repr)
        results = run(command, validated)
        return [_portable(result, workdir, labels, send_files) for result in results]


def answer_rows(pipeline, run: Run, rows: Any, params: dict[str, Any] | None) -> list[dict]:
    """Answer the MLflow model's request: `rows` fill the command's `row_field`, `params` are its options.

    A command whose row field is its inputs takes all rows in one call (one answer per input); another
    (generate's prompt, recommend's user) is called once per row and the answers are concatenated. Params
    the command does not declare are dropped: MLflow fills in every param of the model's schema, which is
    the union over the pipeline's commands.
    """
    params = {key: value for key, value in (params or {}).items() if value is not None}
    command = command_for(pipeline, params)
    options = {key: value for key, value in params.items() if key in command.options.model_fields}
    rows = _as_rows(rows)
    field = command.row_field
    if field is None:
        return answer(pipeline, run, {"command": command.name, **options})
    if field == command.field_with_role("inputs"):
        return answer(pipeline, run, {"command": command.name, **options, field: rows})
    if not rows:
        raise BadRequest("\"inputs\" is empty")
    return [result for row in rows for result in answer(pipeline, run, {"command": command.name, **options,
                                                                        field: row})]


def _as_rows(rows: Any) -> list:
    """The request's rows as a list: a pandas frame's first column (MLflow may pass one), one value alone."""
    if hasattr(rows, "columns") and hasattr(rows, "iloc"):
        return rows.iloc[:, 0].tolist() if len(rows.columns) else []
    if hasattr(rows, "tolist") and not isinstance(rows, np.ndarray):  # a pandas Series
        return rows.tolist()
    if isinstance(rows, np.ndarray) and rows.dtype.kind in "OUS":
        return rows.tolist()
    if isinstance(rows, (list, tuple, np.ndarray)):
        return list(rows)
    return [rows]


def _inputs(inputs: Any, files: bool, workdir: Path, labels: dict[str, str]) -> list:
    """One input or a list; for file commands, image arrays and base64 files become files to read."""
    if isinstance(inputs, np.ndarray):  # from Python: one image, or a batch of images or texts
        one_image = files and inputs.ndim in (2, 3) and inputs.dtype.kind not in "OUS"
        inputs = [inputs] if one_image else list(inputs)
    if not isinstance(inputs, list) or (inputs and isinstance(inputs[0], (int, float))):
        inputs = [inputs]  # one image array or one string
    if not inputs:
        raise BadRequest("\"inputs\" is empty")
    return _materialise_inputs(inputs, workdir, labels) if files else inputs


def _materialise_inputs(inputs: Any, workdir: Path, labels: dict[str, str]) -> list[str]:
    """Image arrays and base64 files become files the pipeline can read; a string (a path) is refused."""
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
        elif isinstance(item, (list, np.ndarray)):
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


def _save_array(item: list | np.ndarray, path: Path, index: int) -> None:
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
    if array.shape[0] * array.shape[1] > MAX_PIXELS:
        raise BadRequest(f"inputs[{index}]: {array.shape[0]}x{array.shape[1]} pixels; at most {MAX_PIXELS:,}")
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
