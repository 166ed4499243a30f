"""Typed run configuration: defaults -> named preset -> YAML file -> `--set dotted.key=value`.

Every layer is merged into one plain dict and validated once by pydantic, so an unknown key or a bad
value fails before any data is loaded, with a message that names the key, the value received, what is
allowed and, for typos, the closest valid key.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deepsuite.common.errors import ConfigError


class Section(BaseModel):
    """A config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class TrainConfig(Section):
    """How `fit()` runs; shared by every pipeline."""

    epochs: int = Field(10, ge=1, description="maximum number of epochs")
    batch_size: int = Field(128, ge=1)
    learning_rate: float = Field(1e-3, gt=0, le=10)
    optimizer: Literal["adam", "adamw", "sgd"] = "adamw"
    weight_decay: float = Field(1e-4, ge=0)
    schedule: Literal["constant", "cosine"] = "cosine"
    warmup_epochs: float = Field(0.0, ge=0, description="linear warm-up length, in epochs")
    early_stopping_patience: int = Field(5, ge=0, description="epochs without val improvement; 0 disables")
    clipnorm: float | None = Field(None, gt=0)
    mixed_precision: bool = False
    devices: Literal["auto"] | Annotated[int, Field(strict=True, ge=1)] = Field(
        "auto", description="data-parallel devices: auto (every visible device) or a count; batch_size is the "
                            "global batch and must divide by it (deepsuite.common.distribution)")
    ema_momentum: float = Field(0.0, ge=0, lt=1, description="keep an exponential moving average of the weights "
                                                            "(Keras optimizer use_ema) and end training on it; "
                                                            "0 disables")
    verbose: Literal["auto", 0, 1, 2] = Field("auto", description="Keras progress: auto (a live bar on a terminal, one "
                                                                 "line per epoch in logs and CI), 0 silent, 1 bar, "
                                                                 "2 one line per epoch")


class TrackingConfig(Section):
    """Where and under which names the run is recorded."""

    experiment: str | None = Field(None, description="MLflow experiment; default: the pipeline name")
    run_name: str | None = Field(None, description="default: <model kind>-<preset>-<timestamp>")
    log_model: bool = True


class RunConfig(Section):
    """The root of every pipeline's config; pipelines narrow `data` and `model`."""

    seed: int = Field(42, ge=0, lt=2**32)
    deterministic: bool = Field(True, description="ask the backend for deterministic ops")
    preset: str = "default"
    data: Section = Section()
    model: Section = Section()
    train: TrainConfig = TrainConfig()
    tracking: TrackingConfig = TrackingConfig()


# ----------------------------------------------------------------------------------------------
# Layers


def parse_set(assignment: str) -> tuple[list[str], Any]:
    """`model.dropout=0.3` -> (["model", "dropout"], 0.3); values are read as YAML scalars."""
    key, sep, raw = assignment.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"bad --set {assignment!r}: expected dotted.key=value, e.g. --set train.epochs=5")
    try:
        value = yaml.safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a dict, with errors that name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 text file ({exc.reason})") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" line {where.line + 1}" if where is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}:{line} is not valid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top, got {type(data).__name__}")
    return data


def deep_merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Return `base` updated by `update`, merging nested dicts instead of replacing them."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = dict(value) if isinstance(value, Mapping) else value
    return merged


def set_path(tree: dict[str, Any], path: list[str], value: Any) -> None:
    node = tree
    for depth, part in enumerate(path[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            dotted = ".".join(path[: depth + 1])
            raise ConfigError(f"--set {'.'.join(path)}: {dotted!r} is a value ({child!r}), not a section")
        node = child
    node[path[-1]] = value


# ----------------------------------------------------------------------------------------------
# Resolution


def resolve(
    config_cls: type[RunConfig],
    presets: Mapping[str, Mapping[str, Any]],
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: list[str] = (),
) -> RunConfig:
    """Build a validated config from the layers, most specific last."""
    file_layer = load_yaml(config_file) if config_file else {}
    set_layer: dict[str, Any] = {}
    for assignment in overrides:
        path, value = parse_set(assignment)
        set_path(set_layer, path, value)

    chosen = preset or set_layer.get("preset") or file_layer.get("preset") or "default"
    if not isinstance(chosen, str) or chosen not in presets:
        raise ConfigError(_unknown("preset", chosen, list(presets)))
    # Start from the pipeline's own defaults (a pipeline may default train.epochs=15, say): merging a
    # partial section into nothing would fall back to the generic section defaults instead.
    merged = deep_merge(config_cls().model_dump(), presets[chosen])
    merged = deep_merge(merged, file_layer)
    merged = deep_merge(merged, set_layer)
    merged["preset"] = chosen
    return validate(config_cls, merged)


def validate(config_cls: type[RunConfig], values: Mapping[str, Any]) -> RunConfig:
    try:
        return config_cls.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(config_cls, exc)) from None


def format_validation_error(config_cls: type[BaseModel], exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        key = ".".join(loc)
        if error["type"] == "extra_forbidden":
            valid = _field_names(config_cls, loc[:-1])
            lines.append(_unknown("key", key, [".".join(loc[:-1] + [name]) for name in valid], error.get("input")))
        else:
            received = _short(error.get("input"))
            lines.append(f"{key}: {error['msg']} (got {received})")
    return "invalid config: " + "; ".join(lines)


def _unknown(kind: str, received: Any, allowed: list[str], value: Any = None) -> str:
    value_note = f" = {_short(value)}" if value is not None else ""
    message = f"unknown {kind} {received!r}{value_note}"
    close = difflib.get_close_matches(str(received), allowed, n=1, cutoff=0.6)
    if close:
        message += f"; did you mean {close[0]!r}?"
    return message + f" (valid: {', '.join(allowed)})"


def _field_names(model: type[BaseModel], loc: list[str]) -> list[str]:
    """The valid keys at a location in the config tree (for error messages)."""
    for part in loc:
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train": {"epochs": 3}} -> {"train.epochs": 3}: the form MLflow params take."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def recipe_default(value: Any, allowed: list | tuple) -> Any:
    """`value` (the base config's) as a hyperparameter's default when the space allows it, else None.

    A search's first trial takes every hyperparameter's default (deepsuite.tuning.tuners), so a space whose defaults
    come from the config starts from the recipe being tuned; `allowed` is a list of choices or a
    (low, high) range. None lets Keras Tuner pick its own default (the first choice, the lowest value).
    """
    if isinstance(allowed, tuple):
        low, high = allowed
        ok = not isinstance(value, bool) and isinstance(value, (int, float)) and low <= value <= high
    else:
        ok = value in allowed
    return value if ok else None


def to_yaml(config: RunConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
