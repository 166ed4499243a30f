"""Find an exported model (run id, registry URI, folder or .keras file), load it and run one of its commands."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepsuite.app import registry
from deepsuite.common import export
from deepsuite.common.commands import Command, Options
from deepsuite.common.errors import DeepsuiteError
from deepsuite.common.export import EXPORT_DIR, MODEL_FILE, Export

RUN_ID = re.compile(r"^(runs:/)?([0-9a-f]{32})(/.*)?$")
MODEL_URI = re.compile(r"^models:/([^/@]+)(?:@([^/]+)|/(\d+))/?$")  # registry: name@alias or name/version


def locate_export(target: str, tracking_uri: str | None, store_dir: Path) -> Path:
    """Return the folder holding model.keras and deepsuite.json for `target`."""
    path = Path(target).expanduser()
    if path.is_file() and path.suffix == ".keras":
        return path.parent
    if path.is_dir():
        for candidate in (path, path / EXPORT_DIR, path / "outputs" / EXPORT_DIR):
            if (candidate / MODEL_FILE).exists():
                return candidate
        raise DeepsuiteError(f"{path} has no model.keras (expected an export folder from `deepsuite run`)")
    model_match = MODEL_URI.match(target)
    if model_match:  # models:/<name>@<alias> or models:/<name>/<version>: fetch the producing run's export
        from deepsuite.common.tracking import Tracker

        tracker = Tracker(tracking_uri, store_dir)
        name, alias, version = model_match.groups()
        run_id = _finished(tracker, tracker.model_version_run(name, alias=alias, version=version))
        return tracker.download(run_id, EXPORT_DIR)
    match = RUN_ID.match(target)
    if match:
        from deepsuite.common.tracking import Tracker

        tracker = Tracker(tracking_uri, store_dir)
        return tracker.download(_finished(tracker, match.group(2)), EXPORT_DIR)
    raise DeepsuiteError(f"{target!r} is neither a model file/folder, an MLflow run id nor a models:/<name>@<alias> URI")


def _finished(tracker, run_id: str) -> str:
    """`run_id` when the run FINISHED; a failed, killed or still running run has no model to trust."""
    run = tracker.get_run(run_id)
    if run.info.status != "FINISHED":
        reason = run.data.tags.get("deepsuite.status_reason", "")
        raise DeepsuiteError(f"run {run_id} is {run.info.status}{f' ({reason})' if reason else ''}: its model may be "
                             "missing or half-trained; use a FINISHED run (or its export folder, knowingly)")
    return run_id


@dataclass
class LoadedModel:
    """An export folder made ready to answer: its pipeline, the Keras model and the typed export."""

    pipeline: Any
    model: Any
    export: Export

    def run(self, command: Command, options: Options) -> list[dict]:
        return getattr(self.pipeline, command.handler)(self.model, self.export, options)


def load(target: str, tracking_uri: str | None = None, store_dir: Path = Path("mlruns")) -> LoadedModel:
    """Locate `target`'s export, read its manifest, find its pipeline and load the model."""
    folder = locate_export(target, tracking_uri, store_dir)
    manifest = export.read_manifest(folder)
    pipeline = registry.get(manifest.pipeline)
    typed = export.read(folder, pipeline, manifest)
    return LoadedModel(pipeline, export.load_model(folder, pipeline), typed)


def cli_name(field: str) -> str:
    """How an option is spelt on the command line, for error messages."""
    return "--" + field.replace("_", "-")


def invoke(verb: str, target: str, options: dict[str, Any], tracking_uri: str | None = None,
           store_dir: Path = Path("mlruns")) -> list[dict]:
    """Load the model behind `target` and run its pipeline's `verb` with `options` (plain values)."""
    loaded = load(target, tracking_uri, store_dir)
    command = loaded.pipeline.command(verb)
    return loaded.run(command, command.validate(options, name_of=cli_name))
