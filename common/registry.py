"""Look pipelines up by name in `pipelines.REGISTRY`, importing only the one asked for."""
from __future__ import annotations

import difflib
import importlib

from common.errors import DeepsuiteError


def names() -> list[str]:
    from pipelines import REGISTRY

    return sorted(REGISTRY)


def get(name: str):
    """Return an instance of the pipeline registered as `name`."""
    from pipelines import REGISTRY

    if name not in REGISTRY:
        close = difflib.get_close_matches(name, REGISTRY, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise DeepsuiteError(f"unknown pipeline {name!r}{hint} (available: {', '.join(sorted(REGISTRY))})")
    module_name, _, class_name = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module_name), class_name)()
