"""Find pipelines by name: the `deepsuite.pipelines` entry-point group, loaded only when asked for.

A pipeline is any distribution's entry point `<name> = "package.module:PipelineClass"` in that group
(this suite's six are in its pyproject.toml). The entry's name is the pipeline's name; the class does not
repeat it. `register()` adds one in-process (notebooks, tests) without installing anything.
"""
from __future__ import annotations

import difflib
import importlib
from importlib.metadata import entry_points

from deepsuite.common.errors import DeepsuiteError

GROUP = "deepsuite.pipelines"
_extra: dict[str, str] = {}


def _targets() -> dict[str, str]:
    """name -> "module:Class"; the first distribution on sys.path wins a name, in-process additions win all."""
    found: dict[str, str] = {}
    for entry in entry_points(group=GROUP):
        found.setdefault(entry.name, entry.value)
    return found | _extra


def register(name: str, target: str) -> None:
    """Make `name` resolve to `target` ("module:Class") in this process."""
    _extra[name] = target


def names() -> list[str]:
    return sorted(_targets())


def get(name: str):
    """Return an instance of the pipeline registered as `name`, its `name` attribute set to it."""
    targets = _targets()
    if name not in targets:
        close = difflib.get_close_matches(name, targets, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise DeepsuiteError(f"unknown pipeline {name!r}{hint} (available: {', '.join(sorted(targets)) or 'none'})")
    module_name, _, class_name = targets[name].partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise DeepsuiteError(f"pipeline {name!r}: cannot load {targets[name]} ({exc})") from None
    pipeline = cls()
    pipeline.name = name
    return pipeline
