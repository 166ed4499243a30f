"""Inference commands a pipeline declares: a verb, a help line and a typed options model.

The front end knows no domain: the CLI builds `deepsuite <verb>` and its flags from these declarations
and the scoring server validates JSON against the same models, so a new domain with a new verb changes
nothing outside its own folder. Two pipelines may declare the same verb with different options; which
options apply is decided once the model's pipeline is known.

Three field roles need the front ends' help, and are marked with `inputs_field` / `output_field` /
`local_files_field`:
- *inputs*: the raw things to work on, positional on the CLI, `"inputs"` in JSON. Files (images, scans)
  are paths on the CLI and data on the server (base64 or pixel arrays): the server never opens a path a
  request names. Strings (texts) are the texts themselves, everywhere.
- *output*: a folder or file the command writes to; on the server a temporary folder whose files come
  back base64-encoded (a client sends `true` to ask for them, never a path).
- *local files*: files the local user names for the command to read (e.g. a file of texts, one per
  line); a CLI option only, refused by the server.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deepsuite.common.errors import ConfigError

ROLE_KEY = "deepsuite_role"


class Options(BaseModel):
    """Base of every command's options: unknown keys are errors, values are coerced and checked."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


def inputs_field(description: str, *, files: bool, required: bool = True) -> Any:
    """The raw inputs; `files=True` says they are files (paths on the CLI, base64 or arrays on the server)."""
    extra = {ROLE_KEY: "inputs", "files": files}
    if required:
        return Field(..., min_length=1, description=description, json_schema_extra=extra)
    return Field(default_factory=list, description=description, json_schema_extra=extra)


def local_files_field(description: str) -> Any:
    """Files on the user's machine for the command to read; the CLI's to give, never a server request's."""
    return Field(default_factory=list, description=description, json_schema_extra={ROLE_KEY: "local_files"})


def output_field(description: str) -> Any:
    """Where the command writes files (`-o` on the CLI); the server supplies a temporary folder."""
    return Field(None, description=description, json_schema_extra={ROLE_KEY: "output", "short": "-o"})


@dataclass(frozen=True)
class Command:
    """One inference verb of a pipeline.

    `handler` names the pipeline method called as `handler(model, export, options)`, returning one
    JSON-able dict per answer (an optional "summary" key is the line the CLI prints). `writes` says
    whether the output folder is always needed ("always") or only when asked for ("on_request").
    `example` is a JSON request body the server prints as a `curl` hint.
    """

    name: str
    help: str
    options: type[Options]
    handler: str
    writes: Literal["never", "on_request", "always"] = "never"
    example: dict[str, Any] = field(default_factory=dict)

    def field_with_role(self, role: str) -> str | None:
        for name, info in self.options.model_fields.items():
            if (info.json_schema_extra or {}).get(ROLE_KEY) == role:
                return name
        return None

    @property
    def row_field(self) -> str | None:
        """The option one row of the MLflow model's input fills: the inputs, else the first option (generate's
        prompt, recommend's user); the other options are the model's params."""
        return self.field_with_role("inputs") or next(
            (name for name, info in self.options.model_fields.items()
             if (info.json_schema_extra or {}).get(ROLE_KEY) not in ("output", "local_files")), None)

    @property
    def inputs_are_files(self) -> bool:
        name = self.field_with_role("inputs")
        return bool(name and (self.options.model_fields[name].json_schema_extra or {}).get("files"))

    def validate(self, values: dict[str, Any], name_of: Callable[[str], str] = repr) -> Options:
        """Options from plain values; a bad value raises ConfigError naming the option (as `name_of` spells it)."""
        try:
            return self.options.model_validate(values)
        except ValidationError as exc:
            raise ConfigError(describe_errors(exc, values, name_of, self)) from None


def describe_errors(exc: ValidationError, values: dict[str, Any], name_of: Callable[[str], str],
                    command: Command) -> str:
    allowed = ", ".join(name_of(n) for n in command.options.model_fields) or "none"
    lines = []
    for error in exc.errors():
        key = str(error["loc"][0]) if error["loc"] else ""
        if error["type"] == "extra_forbidden":
            lines.append(f"unknown option {name_of(key)} for {command.name}; allowed: {allowed}")
        elif error["type"] == "missing":
            lines.append(f"{command.name} needs {name_of(key)}: "
                         f"{command.options.model_fields[key].description or 'a value'}")
        else:
            value = values.get(key)
            lines.append(f"{name_of(key)} {value!r}: {error['msg']}")
    return "; ".join(lines)
