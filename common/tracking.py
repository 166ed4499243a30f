"""Everything MLflow: with mlflow_model.py (the logged model itself), the only module that imports mlflow.

The store defaults to `sqlite:///<store>/mlflow.db` with artifacts under `<store>/artifacts`
(MLflow refuses the plain file store now); `MLFLOW_TRACKING_URI` or `--tracking-uri` point at a
shared server instead. One experiment per pipeline, created as a model-training experiment so the
MLflow 3 UI opens on its runs table.
"""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any, Mapping

from deepsuite.common.errors import DeepsuiteError
from deepsuite.common.redaction import redact

DEFAULT_STORE = Path("mlruns")
MAX_PARAM_LENGTH = 6000
RUN_STATUS_TAG = "deepsuite.status_reason"
PIPELINE_TAG = "deepsuite.pipeline"


def _mlflow():
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    import mlflow

    for name in ("mlflow", "alembic", "mlflow.store.db.utils"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="mlflow")
    return mlflow


def store_uri(store_dir: Path) -> str:
    """The default sqlite tracking URI for a store folder (busy timeout for concurrent runs)."""
    return f"sqlite:///{store_dir.resolve()}/mlflow.db?timeout=60"


def resolve_tracking_uri(tracking_uri: str | None, store_dir: Path = DEFAULT_STORE) -> str:
    return tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or store_uri(store_dir)


def system_metrics() -> bool | None:
    """Whether runs log MLflow's system metrics (CPU, memory, disk, network; GPU with nvidia-ml-py): on
    when psutil is installed (the `system` extra). MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING decides when set
    (None defers to it), and MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL sets the period (MLflow's 10 s)."""
    import importlib.util

    if "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING" in os.environ:
        return None
    return importlib.util.find_spec("psutil") is not None


def _is_local_store(uri: str) -> bool:
    return uri.startswith("sqlite:///")


class Tracker:
    """One MLflow run: params, datasets, per-epoch metrics, figures, the model, the final status."""

    def __init__(self, tracking_uri: str | None = None, store_dir: Path = DEFAULT_STORE):
        self.store_dir = Path(store_dir)
        self.uri = resolve_tracking_uri(tracking_uri, self.store_dir)
        if _is_local_store(self.uri):
            db_path = Path(self.uri.removeprefix("sqlite:///").split("?")[0])
            try:
                db_path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DeepsuiteError(f"MLflow store folder {db_path.parent} cannot be created: {exc.strerror}") from None
            if not os.access(db_path.parent, os.W_OK):
                raise DeepsuiteError(f"MLflow store folder {db_path.parent} is not writable; use --store or --tracking-uri")
        self.mlflow = _mlflow()
        previous = os.environ.get("MLFLOW_TRACKING_URI")
        self.mlflow.set_tracking_uri(self.uri)
        # set_tracking_uri also exports MLFLOW_TRACKING_URI to the environment, which would silently send
        # every later subprocess (other runs, tuner workers, tests) to this store: undo that.
        if previous is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous
        self.run_id: str | None = None
        if _is_local_store(self.uri):
            self._initialise_local_store(db_path.parent)

    def _initialise_local_store(self, folder: Path) -> None:
        """Create/migrate the sqlite schema under a file lock: concurrent first runs would race on it."""
        import fcntl

        with open(folder / ".init.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self.mlflow.MlflowClient().search_experiments(max_results=1)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # -- experiments and runs -------------------------------------------------------------------

    def experiment_id(self, name: str) -> str:
        mlflow = self.mlflow
        client = mlflow.MlflowClient()
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            location = None
            if _is_local_store(self.uri):
                location = (self.store_dir / "artifacts").resolve().as_uri()
            try:
                experiment_id = client.create_experiment(name, artifact_location=location and f"{location}/{name}")
            except mlflow.exceptions.MlflowException:  # created meanwhile by a concurrent run
                experiment_id = client.get_experiment_by_name(name).experiment_id
            client.set_experiment_tag(experiment_id, "mlflow.experimentKind", "custom_model_development")
            return experiment_id
        return experiment.experiment_id

    def start(self, experiment: str, run_name: str, tags: Mapping[str, str], description: str = "",
              resume_run_id: str | None = None) -> str:
        mlflow = self.mlflow
        experiment_id = self.experiment_id(experiment)
        if resume_run_id:
            run = mlflow.start_run(run_id=resume_run_id, log_system_metrics=system_metrics())
        else:
            run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=dict(tags),
                                   description=description or None, log_system_metrics=system_metrics())
        self.run_id = run.info.run_id
        return self.run_id

    def end(self, status: str = "FINISHED", reason: str | None = None) -> None:
        """status: FINISHED, FAILED or KILLED; the reason is kept as a tag for the UI."""
        if self.run_id is None:
            return
        if reason:
            self.mlflow.set_tag(RUN_STATUS_TAG, redact(reason)[:5000])
        self.mlflow.end_run(status=status)
        self.run_id = None

    @property
    def artifact_dir(self) -> Path | None:
        """Local folder of this run's artifacts, when the store is local."""
        uri = self.mlflow.get_artifact_uri()
        return Path(uri.removeprefix("file://")) if uri.startswith("file://") or uri.startswith("/") else None

    # -- logging --------------------------------------------------------------------------------

    def log_params(self, params: Mapping[str, Any]) -> None:
        clean = {k: redact(v)[:MAX_PARAM_LENGTH] for k, v in params.items()}  # no URI password in the store
        existing = self.mlflow.get_run(self.run_id).data.params
        new = {k: v for k, v in clean.items() if k not in existing}
        if new:
            self.mlflow.log_params(new)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.mlflow.set_tags({k: redact(v) for k, v in tags.items()})

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        finite = {k: float(v) for k, v in metrics.items() if v is not None}
        if finite:
            self.mlflow.log_metrics(finite, step=step)

    def log_dataset(self, name: str, source: str, digest: str, context: str, size: int) -> None:
        self.mlflow.log_input(_dataset(name, source, digest), context=context, tags={"size": str(size)})

    def log_text(self, text: str, artifact_file: str) -> None:
        self.mlflow.log_text(text, artifact_file)

    def log_artifact(self, local_path: Path, artifact_path: str | None = None) -> None:
        if Path(local_path).is_dir():
            self.mlflow.log_artifacts(str(local_path), artifact_path)
        else:
            self.mlflow.log_artifact(str(local_path), artifact_path)

    def log_model(self, pipeline, export_dir: Path, example: tuple[list, dict] | None,
                  test_metrics: Mapping[str, float], dataset: tuple[str, str, str]) -> str:
        """Log the run's MLflow model (`deepsuite.common.mlflow_model`: the pyfunc over `export_dir`) as its
        LoggedModel "model", then the test metrics, linked to the model and to the dataset (name, source,
        digest) they were measured on; returns the model's `models:/m-<id>` URI. The test metrics are
        logged (to the run alone) even when logging the model fails."""
        import tempfile

        from deepsuite.common import mlflow_model

        model_id = None
        try:
            with tempfile.TemporaryDirectory(prefix="deepsuite-model-") as scratch:
                model_id = mlflow_model.log(pipeline, export_dir, example, _model_requirements(),
                                            metadata={"deepsuite_pipeline": pipeline.name, "run_id": self.run_id},
                                            tags={PIPELINE_TAG: pipeline.name}, scratch=Path(scratch))
        finally:
            finite = {k: float(v) for k, v in test_metrics.items() if v is not None}
            if finite:
                self.mlflow.log_metrics(finite, model_id=model_id, dataset=_dataset(*dataset) if model_id else None)
        return f"models:/{model_id}"

    def epoch_logger(self, skip_steps=frozenset()):
        """A Keras callback that logs every epoch's metrics at step=epoch+1, skipping steps already logged."""
        import keras

        tracker = self

        class MlflowEpochLogger(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if epoch + 1 in skip_steps:
                    return
                metrics = {k: v for k, v in (logs or {}).items() if k != "learning_rate"}
                optimizer = getattr(self.model, "optimizer", None)
                if optimizer is not None:
                    metrics["learning_rate"] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
                tracker.log_metrics(metrics, step=epoch + 1)

        return MlflowEpochLogger()

    # -- reading back ---------------------------------------------------------------------------

    def get_run(self, run_id: str):
        try:
            return self.mlflow.get_run(run_id)
        except self.mlflow.exceptions.MlflowException:
            raise DeepsuiteError(f"no run {run_id!r} in the MLflow store {redact(self.uri)}") from None

    def unfinished_runs(self, experiment: str) -> list:
        """Runs of `experiment` that never finished (killed process, Ctrl-C, failure), newest first."""
        found = self.mlflow.MlflowClient().get_experiment_by_name(experiment)
        if found is None:
            return []
        return self.mlflow.search_runs([found.experiment_id], output_format="list",
                                       filter_string="attributes.status != 'FINISHED'",
                                       order_by=["attributes.start_time DESC"], max_results=20)

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        history = self.mlflow.MlflowClient().get_metric_history(run_id, key)
        return [(m.step, m.value) for m in history]

    def download(self, run_id: str, artifact_path: str) -> Path:
        try:
            local = self.mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path)
        except Exception as exc:  # noqa: BLE001 - mlflow raises several types here
            raise DeepsuiteError(f"run {run_id}: cannot fetch artifact {artifact_path!r} ({exc})") from None
        return Path(local)

    # -- searches: parent/child runs addressed by id, the model registry (used by tuning/) ------

    def start_child(self, experiment: str, run_name: str, tags: Mapping[str, str], parent_run_id: str,
                    resume_run_id: str | None = None) -> str:
        """Start, or reopen after a crash, a run nested under `parent_run_id`.

        Works whether the parent is this process's active run (one-process search) or lives in another
        process (a distributed worker), so every trial is logged the same way.
        """
        mlflow = self.mlflow
        if resume_run_id:
            run = mlflow.start_run(run_id=resume_run_id, nested=True, tags=dict(tags),
                                   log_system_metrics=system_metrics())
        else:
            run = mlflow.start_run(experiment_id=self.experiment_id(experiment), run_name=run_name,
                                   tags=dict(tags), nested=True, parent_run_id=parent_run_id,
                                   log_system_metrics=system_metrics())
        self.run_id = run.info.run_id
        return self.run_id

    def find_runs(self, experiment: str, tags: Mapping[str, str], max_results: int = 1000) -> list:
        """Runs of `experiment` carrying all of `tags` (exact values), newest first."""
        found = self.mlflow.MlflowClient().get_experiment_by_name(experiment)
        if found is None:
            return []
        clauses = [f"tags.`{key}` = '{value}'" for key, value in tags.items()]
        return self.mlflow.MlflowClient().search_runs(
            [found.experiment_id], filter_string=" and ".join(clauses), max_results=max_results,
            order_by=["attributes.start_time DESC"])

    def log_batch(self, metrics: Mapping[str, float] = {}, params: Mapping[str, Any] = {},
                  tags: Mapping[str, Any] = {}, run_id: str | None = None, step: int | None = None) -> None:
        """Metrics, params and tags in one store call (default: this tracker's run).

        One sqlite transaction instead of three: a tuning trial logs through this so the per-trial
        overhead stays a small share of a short trial. Params must be new (or unchanged) for the run.
        """
        import time

        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        self.mlflow.MlflowClient().log_batch(
            run_id or self.run_id,
            metrics=[Metric(k, float(v), now, step or 0) for k, v in metrics.items() if v is not None],
            params=[Param(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in params.items()],
            tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])

    def end_run_by_id(self, run_id: str, status: str, reason: str | None = None) -> None:
        """Close a run that is not this process's active run (FINISHED, FAILED or KILLED)."""
        client = self.mlflow.MlflowClient()
        if reason:
            client.set_tag(run_id, RUN_STATUS_TAG, redact(reason)[:5000])
        client.set_terminated(run_id, status=status)

    def register_model(self, model_uri: str, name: str, alias: str, tags: Mapping[str, Any] = {}) -> str:
        """Register `model_uri` as a new version of model `name`, point `alias` at it; return the version."""
        client = self.mlflow.MlflowClient()
        try:
            client.get_registered_model(name)
        except self.mlflow.exceptions.MlflowException:
            try:
                client.create_registered_model(name)
            except self.mlflow.exceptions.MlflowException:  # created meanwhile by a concurrent search
                pass
        run_id = model_uri.removeprefix("runs:/").split("/")[0] if model_uri.startswith("runs:/") else None
        source, model_id = model_uri, None
        if run_id:
            source = f"{self.mlflow.get_run(run_id).info.artifact_uri}/{model_uri.split('/', 2)[2]}"
        elif model_uri.startswith("models:/m-"):  # a LoggedModel: the version links to it and to its run
            model_id = model_uri.removeprefix("models:/")
            run_id = client.get_logged_model(model_id).source_run_id
        version = client.create_model_version(name, source, run_id=run_id, model_id=model_id,
                                              tags={k: str(v) for k, v in tags.items()})
        client.set_registered_model_alias(name, alias, version.version)
        return str(version.version)

    def model_version_run(self, name: str, alias: str | None = None, version: str | None = None) -> str:
        """The run that produced `models:/<name>@<alias>` or `models:/<name>/<version>`."""
        client = self.mlflow.MlflowClient()
        try:
            found = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
        except self.mlflow.exceptions.MlflowException:
            which = f"@{alias}" if alias else f"/{version}"
            raise DeepsuiteError(f"no registered model models:/{name}{which} in {redact(self.uri)} "
                                 "(`deepsuite tune` registers one as models:/<pipeline>@best)") from None
        if not found.run_id:
            raise DeepsuiteError(f"models:/{name} version {found.version} was not produced by a run of this store")
        return found.run_id


def _dataset(name: str, source: str, digest: str):
    """The run's dataset as MLflow records it: a file source when `source` is a local path, else a description."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.meta_dataset import MetaDataset

    try:
        from mlflow.data.dataset_source_registry import resolve_dataset_source

        dataset_source = resolve_dataset_source(source) if Path(source).exists() else None
    except Exception:  # noqa: BLE001 - an unrecognised source is described by tags instead
        dataset_source = None
    dataset_source = dataset_source or CodeDatasetSource(tags={"source": source})
    return MetaDataset(source=dataset_source, name=name, digest=digest)


def _model_requirements() -> list[str]:
    """The serving environment, stated instead of inferred (inference re-imports the model in a subprocess:
    seconds and a second TensorFlow in memory for every run): deepsuite's own dependencies and the Keras
    backend, at the versions installed here. deepsuite itself travels as code with the model."""
    from importlib.metadata import PackageNotFoundError, requires, version

    import keras
    from packaging.requirements import Requirement

    try:
        declared = [Requirement(line) for line in requires("deepsuite") or []]
        wanted = [r.name for r in declared if r.marker is None]  # extras (backends, server, test) have markers
    except PackageNotFoundError:
        wanted = ["keras", "mlflow", "numpy", "pydantic", "pillow"]
    backend = keras.backend.backend()
    wanted.append(backend if backend != "tensorflow" else "tensorflow")
    pins = []
    for name in wanted:
        for dist in (name, f"{name}-cpu") if name == "tensorflow" else (name,):
            try:
                pins.append(f"{name}=={version(dist)}")
                break
            except PackageNotFoundError:
                continue
    return pins


def recent_runs(tracker: Tracker, experiment: str, last: int) -> tuple[str | None, list]:
    """(experiment id, its newest `last` runs, newest first) for `deepsuite compare`; (None, []) if absent.

    Returns MLflow Run objects (info: run_id, run_name, status, start/end times; data: params, metrics)
    so callers read them without importing mlflow.
    """
    found = tracker.mlflow.MlflowClient().get_experiment_by_name(experiment)
    if found is None:
        return None, []
    runs = tracker.mlflow.MlflowClient().search_runs([found.experiment_id], max_results=last,
                                                      order_by=["attributes.start_time DESC"])
    return found.experiment_id, list(runs)
