"""The run's MLflow model: one generic pyfunc over the export folder that answers the pipeline's commands on raw
inputs, so `mlflow models serve` (or `build-docker`, MLServer, a managed endpoint) serves every pipeline.

With tracking.py, the only module that imports mlflow. The model's artifacts are the run's export folder
(model.keras, deepsuite.json, the pipeline's extras); its config names the pipeline class as "module:Class",
so loading needs no registry; the code loading imports (deepsuite.common and the pipeline's package, Python
files only) travels in its `code/` folder, and the model itself is "models from code" (a three-line loader
file), so nothing is pickled. A request is what `deepsuite.common.requests.answer_rows` takes, with its
rules (data, never paths; a per-request temporary folder; the options' limits):

  {"inputs": [row, ...], "params": {"command": "predict", "top": 2, ...}}

A row fills the command's `row_field`: an image ({"b64": ..., "name": ...} or a pixel array) or a text for
`predict`/`denoise`, a prompt for `generate`, a user id for `recommend`. Params are the command's options,
typed in the signature's params schema (generated from the options models; "command" picks among several).

The signature: any input (MLflow's "any" column) and a params schema, flagged as MLflow flags a signature it
inferred from `predict(self, context, model_input: list[Any], params)` type hints, so the scoring server
hands the request's "inputs" over as sent (no DataFrame conversion) and enforces only the params. It is
built here rather than inferred from type hints because inference takes the params schema from an input
example, which cannot state an option whose default is None (top_k, seed, stop). Both switches this relies
on (`ModelSignature._is_signature_from_type_hint`, `PythonModel._skip_type_hint_validation`) are MLflow's
own, underscored; mlflow is pinned, and the tests load and serve the model through MLflow's code.
"""
from __future__ import annotations

import importlib
import importlib.util
import shutil
import threading
import types
import typing
from pathlib import Path
from typing import Any, Literal, Mapping

import mlflow
import mlflow.pyfunc
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types.schema import AnyType, ColSpec, DataType, ParamSchema, ParamSpec, Schema

from deepsuite.common import export, requests
from deepsuite.common.commands import ROLE_KEY
from deepsuite.common.errors import DeepsuiteError

NAME = "model"              # the logged model's name: runs:/<run id>/model
EXPORT_ARTIFACT = "export"  # the export folder, under the model's artifacts/
_LOADER = """from mlflow.models import set_model

from deepsuite.common.mlflow_model import DeepsuiteModel

set_model(DeepsuiteModel())
"""


class DeepsuiteModel(mlflow.pyfunc.PythonModel):
    """An export folder answering its pipeline's commands: rows in, one JSON-able dict per answer out."""

    _skip_type_hint_validation = True  # MLflow's switch: the signature is built here, not from type hints

    def load_context(self, context) -> None:
        config = context.model_config
        module, _, name = config["pipeline_class"].partition(":")
        pipeline = getattr(importlib.import_module(module), name)()
        pipeline.name = config["pipeline"]
        folder = Path(context.artifacts[EXPORT_ARTIFACT])
        self.pipeline, self.export = pipeline, export.read(folder, pipeline)
        self.model = export.load_model(folder, pipeline)
        self.lock = threading.Lock()  # one inference at a time, as `deepsuite serve` runs them

    def predict(self, context, model_input, params: dict[str, Any] | None = None) -> list[dict]:
        try:
            return requests.answer_rows(self.pipeline, self._run, model_input, params)
        except (requests.BadRequest, DeepsuiteError) as exc:  # the client's to fix: MLflow answers 400
            raise MlflowException.invalid_parameter_value(str(exc)) from None

    def _run(self, command, options) -> list[dict]:
        with self.lock:
            return getattr(self.pipeline, command.handler)(self.model, self.export, options)


def pipeline_class(pipeline) -> str:
    cls = type(pipeline)
    return f"{cls.__module__}:{cls.__qualname__}"


def signature(pipeline) -> ModelSignature:
    """Any input, any output, and the params schema of the pipeline's commands."""
    found = ModelSignature(inputs=Schema([ColSpec(AnyType())]), outputs=Schema([ColSpec(AnyType())]),
                           params=params_schema(pipeline))
    found._is_signature_from_type_hint = True  # raw "inputs" through the scoring server (module docstring)
    return found


def params_schema(pipeline) -> ParamSchema | None:
    """"command" and every int/float/bool/str option of the pipeline's commands with its default (the first
    command's, when two declare one name), except the row field; an output option is a bool (true: send the
    files back). List and dict options have no param (MLflow params are scalars); local-file options none."""
    if not pipeline.commands:
        return None
    specs = {"command": ParamSpec("command", DataType.string, pipeline.commands[0].name)}
    for command in pipeline.commands:
        for name, info in command.options.model_fields.items():
            role = (info.json_schema_extra or {}).get(ROLE_KEY)
            if name in specs or name == command.row_field or role == "local_files":
                continue
            if role == "output":
                specs[name] = ParamSpec(name, DataType.boolean, False)
                continue
            dtype = _param_type(info.annotation)
            if dtype is not None:
                default = None if info.is_required() else info.get_default(call_default_factory=True)
                specs[name] = ParamSpec(name, dtype, default)
    return ParamSchema(list(specs.values()))


def _param_type(annotation) -> DataType | None:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        kinds = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _param_type(kinds[0]) if len(kinds) == 1 else None
    if typing.get_origin(annotation) is Literal:
        values = typing.get_args(annotation)
        return DataType.string if all(isinstance(v, str) for v in values) else None
    return {bool: DataType.boolean, int: DataType.long, float: DataType.double, str: DataType.string}.get(annotation)


def log(pipeline, export_dir: Path, example: tuple[list, dict] | None, requirements: list[str],
        metadata: Mapping[str, Any], tags: Mapping[str, str], scratch: Path) -> str:
    """Log the pyfunc as this run's LoggedModel `model`; returns its model id. `scratch` is an empty folder.

    The input example (rows, params) is saved, and MLflow checks that it serves by loading the model once
    more in this process and predicting it (well under a second for a smoke model); requirements are stated,
    not inferred (inference re-imports the model in a subprocess).
    """
    loader = scratch / "deepsuite_model.py"  # models from code: nothing pickled
    loader.write_text(_LOADER, encoding="utf-8")
    info = mlflow.pyfunc.log_model(
        name=NAME, python_model=str(loader), artifacts={EXPORT_ARTIFACT: str(export_dir)},
        model_config={"pipeline": pipeline.name, "pipeline_class": pipeline_class(pipeline)},
        signature=signature(pipeline), input_example=example, code_paths=code_paths(pipeline, scratch / "code"),
        pip_requirements=requirements, metadata=dict(metadata), tags=dict(tags))
    return info.model_id


def code_paths(pipeline, into: Path) -> list[str]:
    """What loading the model imports, Python files only: this toolkit (`deepsuite.common`) and the package the
    pipeline class lives in (`deepsuite.pipelines` for the suite's own; another distribution's top-level
    package), laid out as importable folders under `into`."""
    module = type(pipeline).__module__.split(".")
    package = ".".join(module[:2]) if module[0] == "deepsuite" else module[0]
    only_python = shutil.ignore_patterns("__pycache__", "*.pyc", "*.md", "*.txt", "*.json", "*.yaml")
    paths = []
    for name in dict.fromkeys(["deepsuite.common", package]):
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):  # e.g. a pipeline defined in __main__: importable where it is served
            spec = None
        if spec is None or not (spec.submodule_search_locations or spec.origin):
            continue
        target = into.joinpath(*name.split("."))
        if spec.submodule_search_locations:
            shutil.copytree(Path(list(spec.submodule_search_locations)[0]), target, ignore=only_python)
        else:  # a single-module pipeline
            target = target.with_suffix(".py")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(spec.origin, target)
        top = into / name.split(".")[0] if name.startswith("deepsuite.") else target
        paths.append(str(top))
    return list(dict.fromkeys(paths))
