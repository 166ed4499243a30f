"""A pipeline's search space, declared by its own `search_space(hp, config)`, with values the user pins.

The pipeline owns the space (model.py never sees `hp`); this module only asks it, once with default
values, what it declares, and checks the request before any trial runs: an empty space, a pin outside
what the space allows, or a `--set` the space would silently override is a ConfigError naming the fix.
Hyperparameter names are free-form; where a pipeline names them after config keys (`train.batch_size`),
`--set train.batch_size=64` pins that hyperparameter instead of being overridden by it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from deepsuite.common.config import RunConfig, parse_set
from deepsuite.common.errors import ConfigError
from deepsuite.common.pipeline import Pipeline

PRECISION_HP = "train.mixed_precision"


def parse_pins(assignments: list[str]) -> dict[str, Any]:
    """`--fix model.dropout=0.2` -> {"model.dropout": 0.2} (values read as YAML scalars)."""
    pins = {}
    for assignment in assignments:
        path, value = parse_set(assignment)
        pins[".".join(path)] = value
    return pins


def describe(hp) -> str:
    """What a hyperparameter allows, for error messages and the MLflow space description."""
    kind = type(hp).__name__
    if kind == "Choice":
        return f"one of {list(hp.values)}"
    if kind in ("Int", "Float"):
        step = f" step {hp.step}" if hp.step else ""
        log = " (log)" if getattr(hp, "sampling", "linear") == "log" else ""
        return f"{kind.lower()} in [{hp.min_value}, {hp.max_value}]{step}{log}"
    if kind == "Boolean":
        return "true or false"
    return f"fixed {hp.value!r}"


def _allows(hp, value: Any) -> bool:
    kind = type(hp).__name__
    if kind == "Choice":
        return value in list(hp.values)
    if kind == "Boolean":
        return isinstance(value, bool)
    if kind == "Fixed":
        return value == hp.value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if kind == "Int" and (value != int(value) or (hp.step and (value - hp.min_value) % hp.step)):
        return False
    return hp.min_value <= value <= hp.max_value


def _dotted(values: dict, key: str) -> Any:
    node: Any = values
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


@dataclass
class SearchSpace:
    """The pipeline's space over a base config (preset + file + --set), plus pinned values."""

    pipeline: Pipeline
    base: RunConfig
    pins: dict[str, Any] = field(default_factory=dict)
    set_keys: dict[str, Any] = field(default_factory=dict)   # the user's --set key -> value
    tune_precision: bool = False                             # add train.mixed_precision (helps on GPUs)

    def apply(self, hp) -> RunConfig:
        """The trial's config: the pipeline's choices for `hp` applied to the base config."""
        config = self.pipeline.search_space(hp, self.base)
        if self.tune_precision:
            config = config.model_copy(deep=True)
            config.train.mixed_precision = hp.Boolean(PRECISION_HP, default=False)
        return config

    def declare(self):
        """Check the request and return the oracle's HyperParameters: pins as Fixed, the rest tunable."""
        import keras_tuner as kt

        free = kt.HyperParameters()
        defaults = self._call(free)
        declared = {hp.name: hp for hp in free.space}
        if not declared:
            raise ConfigError(f"empty search space: {self.pipeline.name}.search_space declared no hyperparameters")
        pins = dict(self.pins)
        for key, value in self.set_keys.items():
            if key in declared:
                if key in pins and pins[key] != value:
                    raise ConfigError(f"contradictory request: --set {key}={value!r} and --fix {key}={pins[key]!r}")
                pins[key] = value
        for name, value in pins.items():
            if name not in declared:
                raise ConfigError(f"--fix {name}: no such hyperparameter in {self.pipeline.name}'s search space "
                                  f"(its hyperparameters: {', '.join(declared)})")
            if not _allows(declared[name], value):
                raise ConfigError(f"contradictory search space: {name}={value!r} is pinned but the space allows "
                                  f"{describe(declared[name])}")
        self._check_overridden_sets(defaults, declared)
        tunable = [n for n, hp in declared.items() if n not in pins and type(hp).__name__ != "Fixed"]
        if not tunable:
            raise ConfigError(f"empty search space: every hyperparameter of {self.pipeline.name} is pinned or fixed "
                              f"({', '.join(declared)}); nothing to tune - use `deepsuite run` for one config")
        space = kt.HyperParameters()
        for name, value in pins.items():
            space.Fixed(name, value)
        self._call(space)
        self.pins = pins
        return space

    def _call(self, hp) -> RunConfig:
        try:
            return self.apply(hp)
        except NotImplementedError:
            raise ConfigError(f"empty search space: pipeline {self.pipeline.name!r} defines no search_space(hp, "
                              "config) yet, so it cannot be tuned") from None
        except ConfigError as exc:
            raise ConfigError(f"contradictory search space of {self.pipeline.name}: its default choices give an "
                              f"invalid config ({exc})") from None
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"contradictory search space of {self.pipeline.name}: {exc}") from None

    def _check_overridden_sets(self, defaults: RunConfig, declared: dict) -> None:
        """A --set on a key the space rewrites would be silently ignored: say so instead."""
        tuned = defaults.model_dump(mode="json")
        base = self.base.model_dump(mode="json")
        for key in self.set_keys:
            if key in declared:
                continue
            if _dotted(tuned, key) != _dotted(base, key):
                raise ConfigError(f"contradictory request: --set {key}={self.set_keys[key]!r} is overridden by "
                                  f"{self.pipeline.name}'s search space (hyperparameters: {', '.join(declared)}); "
                                  "drop the --set, or pin the hyperparameter that sets it with --fix NAME=VALUE")

    def as_json(self, space) -> str:
        """The space as JSON: what MLflow records on the search's parent run."""
        return json.dumps({hp.name: describe(hp) for hp in space.space}, indent=1)


def trial_values(hp) -> dict[str, Any]:
    """A trial's own hyperparameter values, without Hyperband's bookkeeping entries (tuner/...)."""
    return {k: v for k, v in hp.values.items() if not k.startswith("tuner/")}
