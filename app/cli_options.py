"""Command-line flags from a pipeline's declared options model: one source for CLI and server.

`deepsuite predict MODEL a.png --top 2`: the CLI knows `predict` and MODEL; the rest of the line is
parsed by `options_parser(command)`, built from the pydantic fields of the command the model's pipeline
declares (names -> `--flags`, types -> argparse types, defaults and descriptions -> help).
"""
from __future__ import annotations

import argparse
import sys
import types
import typing
from typing import Any, Literal

from deepsuite.app import registry
from deepsuite.common.commands import ROLE_KEY, Command
from deepsuite.common.errors import DeepsuiteError


def declared_commands() -> dict[str, list[tuple[str, Command]]]:
    """verb -> [(pipeline name, its Command)] over every installed pipeline that loads."""
    verbs: dict[str, list[tuple[str, Command]]] = {}
    for name in registry.names():
        try:
            pipeline = registry.get(name)
        except DeepsuiteError as exc:
            print(f"warning: {exc}", file=sys.stderr)
            continue
        for command in pipeline.commands:
            verbs.setdefault(command.name, []).append((name, command))
    return verbs


def options_parser(command: Command, prog: str, usage: str | None = None) -> argparse.ArgumentParser:
    """A parser whose namespace holds only the options given (pydantic fills in the defaults)."""
    parser = argparse.ArgumentParser(prog=prog, allow_abbrev=False, argument_default=argparse.SUPPRESS,
                                     description=command.help, usage=usage, add_help=usage is None)
    for name, info in command.options.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        text = info.description or ""
        if extra.get(ROLE_KEY) == "inputs":
            parser.add_argument(name, nargs="+" if info.is_required() else "*", metavar=name.upper(), help=text)
            continue
        flags = ["--" + name.replace("_", "-"), *([extra["short"]] if extra.get("short") else [])]
        kind = _plain_type(info.annotation)
        kwargs: dict[str, Any] = {}
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction if info.default is True else "store_true"
        elif typing.get_origin(kind) is Literal:
            choices = typing.get_args(kind)
            kwargs.update(choices=choices, type=type(choices[0]))
        elif typing.get_origin(kind) in (list, tuple):
            kwargs.update(nargs="+", type=_scalar(typing.get_args(kind)[0]))
        else:
            kwargs.update(type=_scalar(kind), metavar=name.upper())
        if info.is_required():
            kwargs["required"] = True
        elif info.default not in (None, "", False) and "default" not in text:
            text += f" (default {info.default})"
        parser.add_argument(*flags, help=text, **kwargs)
    return parser


def describe_options(verb: str, declared: list[tuple[str, Command]]) -> str:
    """The `--help` epilog of `deepsuite <verb>`: each declaring pipeline's options."""
    parts = ["options by pipeline (the model's pipeline decides which apply):"]
    for pipeline, command in declared:
        text = options_parser(command, prog=f"deepsuite {verb} MODEL", usage=argparse.SUPPRESS).format_help()
        lines = [line for line in text.splitlines() if line.strip() and line != command.help]
        parts.append(f"\n{pipeline}: {command.help}\n" + "\n".join("  " + line for line in lines))
    return "\n".join(parts)


def _plain_type(annotation: Any) -> Any:
    """`int | None` -> int; `Optional[Path]` -> Path; anything else unchanged."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return annotation


def _scalar(kind: Any):
    """argparse's type for a field: int and float convert; anything else (str, Path) stays a string."""
    return kind if kind in (int, float) else str
