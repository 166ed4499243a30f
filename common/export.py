"""The export folder, in one place: `model.keras`, `deepsuite.json` (the manifest) and a pipeline's extras.

`deepsuite run` writes it, `deepsuite predict/serve` and tuning read it. The manifest names the pipeline,
the run and the data, and carries the pipeline's typed metadata (class names, vocabulary size, ...),
validated against the pipeline's `metadata_cls` when written and again when read, so a missing or
misspelt key fails at export time or says which file is wrong, not a `KeyError` in the middle of a
prediction. `format_version` is 1; folders exported before it existed (no version) read the same way.
"""
from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deepsuite.common.errors import DeepsuiteError

EXPORT_DIR = "export"
MANIFEST_FILE = "deepsuite.json"
MODEL_FILE = "model.keras"
FORMAT_VERSION = 1


class ExportMetadata(BaseModel):
    """Base of a pipeline's typed metadata: what inference needs to know about the training data."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class Manifest(BaseModel):
    """`deepsuite.json`; `metadata` is validated separately, by the pipeline's own model."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    format_version: int = Field(0, description="0: written before the field existed")
    pipeline: str
    preset: str = ""
    run_id: str | None = None
    dataset: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)
    test_metrics: dict[str, float] = Field(default_factory=dict)


@dataclass
class Export:
    """A read export folder: its manifest and the pipeline's metadata, typed."""

    folder: Path
    manifest: Manifest
    metadata: ExportMetadata

    def path(self, name: str) -> Path:
        """A file the pipeline wrote beside the model (vocabulary, tokenizer, item titles)."""
        return self.folder / name


def write(folder: Path, model, pipeline, metadata: ExportMetadata, **manifest: Any) -> Path:
    """Save model.keras atomically and the validated manifest; returns the model path."""
    folder.mkdir(parents=True, exist_ok=True)
    typed = _validated_metadata(pipeline, metadata.model_dump(mode="json"), f"pipeline {pipeline.name!r}'s export")
    model_path = folder / MODEL_FILE
    partial = folder / f"{MODEL_FILE}.part.keras"
    model.save(partial)
    partial.replace(model_path)  # never leave a half-written model under the final name
    document = Manifest(format_version=FORMAT_VERSION, pipeline=pipeline.name,
                        metadata=typed.model_dump(mode="json"), **manifest)
    (folder / MANIFEST_FILE).write_text(json.dumps(document.model_dump(mode="json"), indent=2, default=str),
                                        encoding="utf-8")
    return model_path


def read_manifest(folder: Path) -> Manifest:
    path = folder / MANIFEST_FILE
    if not path.exists():
        raise DeepsuiteError(f"{folder} has no {MANIFEST_FILE}; export it with `deepsuite run`")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        manifest = Manifest.model_validate(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, ValidationError) as exc:
        raise DeepsuiteError(f"{path}: not a deepsuite manifest ({_first_line(exc)})") from None
    if manifest.format_version > FORMAT_VERSION:
        raise DeepsuiteError(f"{path}: format version {manifest.format_version} is newer than this deepsuite "
                             f"reads ({FORMAT_VERSION}); upgrade deepsuite")
    return manifest


def read(folder: Path, pipeline, manifest: Manifest | None = None) -> Export:
    """The manifest (read here unless given) and typed metadata of an export folder written for `pipeline`."""
    manifest = manifest or read_manifest(folder)
    metadata = _validated_metadata(pipeline, manifest.metadata, str(folder / MANIFEST_FILE))
    return Export(folder=folder, manifest=manifest, metadata=metadata)


def load_model(folder: Path, pipeline):
    """Load model.keras for inference, after importing the pipeline's model module (it registers the custom
    layers). Not compiled: inference needs no optimizer or loss, and an export whose optimizer was never built
    (a tuner's weights-only restore) then loads without Keras warning that it skips the optimizer's variables."""
    import keras

    package = type(pipeline).__module__.rpartition(".")[0]
    try:
        importlib.import_module(f"{package}.model")
    except ModuleNotFoundError:
        pass  # a pipeline without custom layers may keep its model elsewhere
    try:
        return keras.saving.load_model(folder / MODEL_FILE, compile=False)
    except Exception as exc:  # noqa: BLE001 - keras raises several types for bad files
        raise DeepsuiteError(f"{folder / MODEL_FILE}: cannot load model ({exc})") from None


def _validated_metadata(pipeline, values: dict[str, Any], where: str) -> ExportMetadata:
    try:
        return pipeline.metadata_cls.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'metadata'}: {e['msg']}" for e in exc.errors())
        raise DeepsuiteError(f"{where}: metadata does not match pipeline {pipeline.name!r} ({problems})") from None


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
