"""A dataset is a name with an ordered list of sources: the first one that works wins.

When none works the error lists every source tried, why it failed and how to fix it, instead of the
last exception of the last attempt.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Generic, TypeVar

from deepsuite.common.errors import DataError

T = TypeVar("T")


@dataclass(frozen=True)
class Source(Generic[T]):
    name: str                 # short id logged as the dataset source, e.g. "debian:fashion-mnist"
    load: Callable[[], T]     # raises DataError (or OSError) when the source cannot be used
    hint: str = ""            # how a user makes this source available


def first_available(dataset: str, sources: list[Source[T]]) -> tuple[T, Source[T]]:
    failures = []
    for source in sources:
        try:
            return source.load(), source
        except (DataError, OSError) as exc:
            failures.append(f"{source.name}: {exc}" + (f" ({source.hint})" if source.hint else ""))
    if len(failures) == 1:
        raise DataError(f"dataset {dataset!r} from {failures[0]}")
    tried = "; ".join(f"[{i}] {failure}" for i, failure in enumerate(failures, 1))
    raise DataError(f"no source for dataset {dataset!r} could be loaded; tried {tried}")
