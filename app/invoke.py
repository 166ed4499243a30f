"""Load an exported model from a run id, a model folder or a .keras file, and predict on raw inputs."""
from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

from deepsuite.common.errors import DeepsuiteError
from deepsuite.common.runner import EXPORT_DIR, METADATA_FILE

RUN_ID = re.compile(r"^(runs:/)?([0-9a-f]{32})(/.*)?$")
MODEL_URI = re.compile(r"^models:/([^/@]+)(?:@([^/]+)|/(\d+))/?$")  # registry: name@alias or name/version


def locate_export(target: str, tracking_uri: str | None, store_dir: Path) -> Path:
    """Return the folder holding model.keras and deepsuite.json for `target`."""
    path = Path(target).expanduser()
    if path.is_file() and path.suffix == ".keras":
        return path.parent
    if path.is_dir():
        for candidate in (path, path / EXPORT_DIR, path / "outputs" / EXPORT_DIR):
            if (candidate / "model.keras").exists():
                return candidate
        raise DeepsuiteError(f"{path} has no model.keras (expected an export folder from `deepsuite run`)")
    model_match = MODEL_URI.match(target)
    if model_match:  # models:/<name>@<alias> or models:/<name>/<version>: fetch the producing run's export
        from deepsuite.common.tracking import Tracker

        tracker = Tracker(tracking_uri, store_dir)
        name, alias, version = model_match.groups()
        return tracker.download(tracker.model_version_run(name, alias=alias, version=version), EXPORT_DIR)
    match = RUN_ID.match(target)
    if match:
        from deepsuite.common.tracking import Tracker

        tracker = Tracker(tracking_uri, store_dir)
        tracker.get_run(match.group(2))
        return tracker.download(match.group(2), EXPORT_DIR)
    raise DeepsuiteError(f"{target!r} is neither a model file/folder, an MLflow run id nor a models:/<name>@<alias> URI")


def load_export(folder: Path) -> tuple[Any, dict]:
    import keras

    meta_path = folder / METADATA_FILE
    if not meta_path.exists():
        raise DeepsuiteError(f"{folder} has no {METADATA_FILE}; export it with `deepsuite run`")
    metadata = json.loads(meta_path.read_text(encoding="utf-8"))
    _import_pipeline(metadata.get("pipeline"))
    try:
        model = keras.saving.load_model(folder / "model.keras")
    except Exception as exc:  # noqa: BLE001 - keras raises several types for bad files
        raise DeepsuiteError(f"{folder / 'model.keras'}: cannot load model ({exc})") from None
    return model, metadata


def _import_pipeline(name: str | None) -> None:
    """Import the pipeline's module first: it registers the custom Keras layers its model may use."""
    from deepsuite.common import registry

    if name:
        try:
            pipeline = registry.get(name)
        except DeepsuiteError:
            return  # an unknown pipeline is reported by invoke(); a plain Keras model may still load
        # Every pipeline folder has a model.py (the design's three files); its layers register on import.
        package = type(pipeline).__module__.rpartition(".")[0]
        try:
            importlib.import_module(f"{package}.model")
        except ModuleNotFoundError:
            pass


def invoke(command: str, target: str, options: dict[str, Any], tracking_uri: str | None = None,
           store_dir: Path = Path("mlruns")) -> list[dict]:
    """Load the model behind `target` and call the pipeline's `command` (predict, generate, ...)."""
    from deepsuite.common import registry

    folder = locate_export(target, tracking_uri, store_dir)
    model, metadata = load_export(folder)
    pipeline = registry.get(metadata["pipeline"])
    info = dict(metadata["metadata"], export_dir=str(folder))
    if command == "predict":
        return pipeline.predict(model, options.pop("inputs"), info, options)
    return getattr(pipeline, command)(model, info, options)
