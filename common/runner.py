"""seed -> data -> model -> fit -> evaluate -> report -> export, the same way for every pipeline.

This is the only place that calls `fit()`. The MLflow run is opened before the data is loaded, so a
failure anywhere (bad data, NaN loss, Ctrl-C) leaves a run marked FAILED or KILLED with the reason,
never a run that looks finished, and never a registered half-written model.
"""
from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from deepsuite.common import backend, distribution, export, reports
from deepsuite.common.config import RunConfig, flatten, to_yaml
from deepsuite.common.data.cache import cache_root, ensure_writable
from deepsuite.common.errors import DeepsuiteError
from deepsuite.common.redaction import redact
from deepsuite.common.run_lock import RunLock, is_locked
from deepsuite.common.pipeline import Evaluation, Pipeline, Reference, Splits
from deepsuite.common.tracking import DEFAULT_STORE, PIPELINE_TAG, Tracker


class TrainingDiverged(DeepsuiteError):
    """The loss became NaN or infinite; the run is marked FAILED."""


@dataclass
class RunResult:
    run_id: str
    run_name: str
    metrics: dict[str, float]
    model_path: Path | None
    report_path: Path | None
    model_uri: str | None
    history: dict[str, list[float]]


def run(pipeline: Pipeline, config: RunConfig, tracking_uri: str | None = None,
        store_dir: Path = DEFAULT_STORE, echo: Callable[[str], None] = print,
        resume_run_id: str | None = None) -> RunResult:
    """Run `pipeline` end to end; with `resume_run_id`, continue that run from its last saved epoch.

    In a multi-process JAX job (distribution.initialize_processes) every process trains; only process 0
    records the MLflow run, writes the report and the export.
    """
    if distribution.process_index() > 0:
        if resume_run_id:
            raise DeepsuiteError("--resume continues a single-process run; a multi-process run starts anew")
        return _follow(pipeline, config, echo)
    ensure_writable(cache_root(getattr(config.data, "cache_dir", None)), "cache")
    tracker = Tracker(tracking_uri, store_dir)
    experiment = config.tracking.experiment or pipeline.name
    lock = None
    if resume_run_id:
        lock = RunLock(Path(store_dir) / "work" / resume_run_id, resume_run_id)  # refuses a run still training
        try:
            run_name, config, logged_steps = _prepare_resume(pipeline, tracker, store_dir, resume_run_id, echo)
        except BaseException:
            lock.release()
            raise
    else:
        run_name = config.tracking.run_name or f"{pipeline.run_name(config)}-{datetime.now():%m%d-%H%M%S}"
        logged_steps = set()
        _mention_interrupted_runs(tracker, experiment, store_dir, echo)
    echo(f"deepsuite {pipeline.name} - resolved config:\n{to_yaml(config)}")
    env_tags = backend.configure(config.seed, config.deterministic, config.train.mixed_precision)
    if note := backend.precision_note(env_tags):
        echo(note)
    plan = distribution.plan(config.train)
    if plan.processes > 1 and resume_run_id:
        raise DeepsuiteError("--resume continues a single-process run; a multi-process run starts anew")
    env_tags |= plan.tags()

    tags = {PIPELINE_TAG: pipeline.name, "deepsuite.preset": config.preset, **env_tags}
    tracker.start(experiment, run_name, tags, description=f"{pipeline.description} (preset {config.preset})",
                  resume_run_id=resume_run_id)
    run_id = tracker.run_id
    try:
        work_dir = ensure_writable(Path(store_dir) / "work" / run_id, "run work")
        lock = lock or RunLock(work_dir, run_id)
        (work_dir / "config.yaml").write_text(to_yaml(config), encoding="utf-8")  # what --resume reloads
        echo(f"MLflow run {run_name} ({run_id}) in {redact(tracker.uri)}")
        tracker.set_tags({"deepsuite.resumed": "true"} if resume_run_id else {})
        tracker.log_params(flatten(config.model_dump(mode="json")))
        result = _run_stages(pipeline, config, tracker, work_dir, echo, logged_steps, env_tags, plan)
    except KeyboardInterrupt:
        tracker.end("KILLED", "interrupted by the user (Ctrl-C); resume with --resume " + run_id)
        raise
    except BaseException as exc:
        tracker.end("FAILED", f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if lock is not None:
            lock.release()
    tracker.end("FINISHED")
    return RunResult(run_id=run_id, run_name=run_name, **result)


def _follow(pipeline: Pipeline, config: RunConfig, echo: Callable[[str], None]) -> RunResult:
    """A multi-process run's process 1, 2, ...: the same data, model and fit as process 0, recording nothing
    (no MLflow run, no report, no export; its fit backup goes to a private temporary folder)."""
    backend.configure(config.seed, config.deterministic, config.train.mixed_precision)
    plan = distribution.plan(config.train)
    echo(f"process {plan.process_index} of {plan.processes}: training with process 0, which records the run "
         f"({plan.summary()})")
    splits = pipeline.load_data(config)
    with tempfile.TemporaryDirectory(prefix="deepsuite-process-") as work, distribution.scope(plan):
        model = pipeline.build_model(config, splits)
        distribution.require_compiled(model, plan)
        history, _ = fit_model(pipeline, model, splits, config, None, Path(work))
    return RunResult(run_id="", run_name=f"process {plan.process_index} of {plan.processes}", metrics={},
                     model_path=None, report_path=None, model_uri=None, history=history)


def _prepare_resume(pipeline: Pipeline, tracker: Tracker, store_dir: Path, run_id: str,
                    echo: Callable[[str], None]) -> tuple[str, RunConfig, set[int]]:
    """Check the run can be resumed; return its name, its own saved config and the epochs already logged."""
    from deepsuite.common.config import load_yaml, validate

    previous = tracker.get_run(run_id)
    owner = previous.data.tags.get(PIPELINE_TAG)
    if owner != pipeline.name:
        raise DeepsuiteError(f"run {run_id} belongs to pipeline {owner!r}, not {pipeline.name!r}")
    if previous.info.status == "FINISHED":
        raise DeepsuiteError(f"run {run_id} already finished; start a new run instead of --resume")
    saved = Path(store_dir) / "work" / run_id / "config.yaml"
    if not saved.exists():
        raise DeepsuiteError(f"run {run_id} has no saved config at {saved}; it cannot be resumed from this store")
    config = validate(pipeline.config_cls, load_yaml(saved))
    logged = {step for step, _ in tracker.metric_history(run_id, "loss")}
    backup = saved.parent / "backup"
    if logged and not backup.exists():  # starting again at epoch 0 would merge two trainings' curves
        raise DeepsuiteError(f"run {run_id} logged {len(logged)} epoch(s) but its training backup ({backup}) is gone, "
                             "so it cannot continue where it stopped; start a new run")
    echo(f"resuming run {previous.info.run_name} ({run_id}) after {len(logged)} logged epoch(s), "
         f"with its own saved config")
    return previous.info.run_name, config, logged


def _mention_interrupted_runs(tracker: Tracker, experiment: str, store_dir: Path, echo) -> None:
    for run in tracker.unfinished_runs(experiment)[:1]:
        work = Path(store_dir) / "work" / run.info.run_id
        if (work / "backup").exists() and not is_locked(work):  # a run another process trains is not interrupted
            echo(f"note: run {run.info.run_name} ({run.info.run_id}) was interrupted; "
                 f"continue it with --resume {run.info.run_id} (or --resume last)")


def find_last_unfinished(pipeline: Pipeline, config: RunConfig, tracking_uri: str | None,
                         store_dir: Path = DEFAULT_STORE) -> str:
    """The most recent interrupted run of this pipeline that left a training backup."""
    tracker = Tracker(tracking_uri, store_dir)
    for run in tracker.unfinished_runs(config.tracking.experiment or pipeline.name):
        work = Path(store_dir) / "work" / run.info.run_id
        if (work / "backup").exists() and not is_locked(work):
            return run.info.run_id
    raise DeepsuiteError(f"no interrupted {pipeline.name} run with a saved backup in {store_dir}")


def _run_stages(pipeline: Pipeline, config: RunConfig, tracker: Tracker, work_dir: Path,
                echo: Callable[[str], None], logged_steps: set[int], env_tags: dict[str, str],
                plan: distribution.Plan) -> dict[str, Any]:
    started = time.time()
    splits = pipeline.load_data(config)
    if not logged_steps:
        _log_dataset(tracker, splits)
    else:
        _check_same_data(tracker, splits)
    echo(f"data: {splits.info.name} from {splits.info.source} - "
         + ", ".join(f"{k} {v}" for k, v in splits.sizes().items()))

    if plan.parallel:
        echo(f"devices: {plan.summary()}")
    with distribution.scope(plan):  # the model's variables are laid out on the plan's devices as it is built
        model = pipeline.build_model(config, splits)
        distribution.require_compiled(model, plan)
        history, fit_seconds = fit_model(pipeline, model, splits, config, tracker, work_dir,
                                         logged_steps=logged_steps)
    model = distribution.local_model(model, lambda: pipeline.build_model(config, splits))
    tracker.log_metrics({"fit_seconds": fit_seconds})

    evaluation = pipeline.evaluate(model, splits, config)
    test_metrics = {f"test_{k}": float(v) for k, v in evaluation.metrics.items()}  # logged by _export

    out_dir = work_dir / "outputs"
    facts = _run_facts(splits, config, env_tags, history, fit_seconds, resumed=bool(logged_steps))
    report_path = _write_report(pipeline, config, tracker, evaluation, history, test_metrics, out_dir, facts,
                                pipeline.references_for(splits.info))
    model_path, model_uri = _export(pipeline, model, splits, config, tracker, out_dir, test_metrics)
    tracker.log_metrics({"total_seconds": time.time() - started})
    artifact_dir = tracker.artifact_dir
    return {
        "metrics": test_metrics,
        "model_path": (artifact_dir / export.EXPORT_DIR / export.MODEL_FILE) if artifact_dir else model_path,
        "report_path": (artifact_dir / "report.html") if artifact_dir else report_path,
        "model_uri": model_uri,
        "history": history,
    }


def _check_same_data(tracker: Tracker, splits: Splits) -> None:
    """A resumed run trains on the data it started with, or not at all."""
    recorded = tracker.get_run(tracker.run_id).data.params.get("data.digest")
    if recorded and recorded != splits.info.digest:
        raise DeepsuiteError(f"the data changed since run {tracker.run_id} started (digest {recorded}, now "
                             f"{splits.info.digest}); a resumed run must see the same data: start a new run")


def _log_dataset(tracker: Tracker, splits: Splits) -> None:
    info = splits.info
    for context, size in splits.sizes().items():
        tracker.log_dataset(info.name, info.source, f"{info.digest}", context, size)
    tracker.log_params({f"data.size.{k}": v for k, v in splits.sizes().items()}
                       | {"data.digest": info.digest, "data.resolved_source": info.source})


def fit_model(pipeline: Pipeline, model, splits: Splits, config: RunConfig, tracker: Tracker | None,
              work_dir: Path, extra_callbacks: tuple = (), logged_steps: set[int] = frozenset(),
              initial_epoch: int = 0):
    """fit() with the suite's callbacks: resume backup, NaN stop, MLflow epoch logging, early stopping.

    Returns (history dict, fit seconds); raises TrainingDiverged on a NaN/inf loss. Tuning trials call
    this too (with their own tracker and callbacks), so every fit in the suite behaves the same;
    `initial_epoch` lets a Hyperband trial continue a previous one from that epoch up to train.epochs.
    """
    import keras

    from deepsuite.common.batches import epoch_seeded_arrays
    from deepsuite.common.callbacks import EpochFeed, ExactBackup, ResumableEarlyStopping

    train = config.train
    data = pipeline.fit_data(splits, config)
    # Arrays become batches drawn from (seed, epoch), and fit() shuffles nothing itself: Keras's shuffling
    # lives in process state, so a resumed run would see other batches than the uninterrupted one.
    feed = data.x if isinstance(data.x, keras.utils.PyDataset) else \
        epoch_seeded_arrays(data.x, data.y, train.batch_size, config.seed)
    x = getattr(feed, "dataset", feed)
    y = data.y if x is data.x else None
    # Under a JAX distribution (distribution.scope) every batch divides by the device count, per process.
    x, validation_data = distribution.fit_feeds(x, data.validation_data, train.batch_size)
    # Order matters at the end of an epoch: the epoch logger and early stopping run before the backup,
    # so the backup holds what they decided. A kill between the logger and the backup re-runs that epoch
    # on resume, and the logger skips the steps already logged, so no epoch is missing or duplicated.
    stopping = None
    if train.early_stopping_patience and data.validation_data is not None:
        stopping = ResumableEarlyStopping(monitor=pipeline.monitor, mode=pipeline.monitor_mode,
                                          patience=train.early_stopping_patience, restore_best_weights=True)
    backup = ExactBackup(work_dir / "backup", parts=(stopping,) if stopping else ())
    callbacks = [
        keras.callbacks.TerminateOnNaN(),
        *([EpochFeed(feed)] if hasattr(feed, "set_epoch") else []),
        *([tracker.epoch_logger(skip_steps=logged_steps)] if tracker is not None else []),
        *([stopping] if stopping else []),
        backup,
        *extra_callbacks,
    ]
    started = time.time()
    history = model.fit(x, y, validation_data=validation_data, epochs=train.epochs,
                        class_weight=data.class_weight, steps_per_epoch=data.steps_per_epoch, shuffle=False,
                        callbacks=callbacks, verbose=progress_mode(train.verbose), initial_epoch=initial_epoch)
    fit_seconds = time.time() - started
    # The backup's history holds the epochs of a killed process too; fit()'s only this process's.
    curves = backup.history or {k: [float(v) for v in vs] for k, vs in history.history.items()}
    losses = curves.get("loss", [])
    if losses and not math.isfinite(losses[-1]):
        raise TrainingDiverged(f"training loss became {losses[-1]} at epoch {len(losses)}; "
                               "lower train.learning_rate or set train.clipnorm")
    return curves, fit_seconds


def progress_mode(verbose) -> int:
    """Keras's verbosity for train.verbose: "auto" is the live bar on a terminal (an epoch can take minutes)
    and one line per epoch where output goes to a file or a CI log (a bar there is thousands of redraws)."""
    if verbose != "auto":
        return int(verbose)
    import sys

    return 1 if sys.stdout.isatty() else 2


def _run_facts(splits: Splits, config: RunConfig, tags: dict[str, str], history: dict[str, list[float]],
               fit_seconds: float, resumed: bool) -> list[tuple[str, str]]:
    """What a reader of one run's report asks first: which data, how long it trained, on what."""
    import os
    import platform

    info = splits.info
    epochs = len(history.get("loss", []))
    training = f"{epochs} of {config.train.epochs} epochs"
    if epochs < config.train.epochs and config.train.early_stopping_patience:
        training += f" (early stopping, patience {config.train.early_stopping_patience}, best weights kept)"
    training += f"; fit {fit_seconds:.0f} s" + (" in the process that resumed it" if resumed else "")
    return [
        ("data", f"{info.name} from {redact(info.source)}"),
        ("split sizes", ", ".join(f"{k} {v}" for k, v in splits.sizes().items())),
        ("data digest", info.digest),
        ("training", training),
        ("seed", str(config.seed)),
        *([("devices", f"{tags['distribution.devices']} ({tags['distribution']}, mesh {tags['distribution.mesh']}), "
                       f"global batch {tags['distribution.global_batch']}, "
                       f"{tags['distribution.per_device_batch']} per device")]
          if tags.get("distribution", "none") != "none" else []),
        ("hardware", f"{tags.get('device', '?')} ({tags.get('backend', '?')} backend, "
                     f"{tags.get('precision_policy', '?')}), {os.cpu_count()} CPU cores, "
                     f"{platform.system()} {platform.machine()}"),
        ("software", ", ".join(f"{k.removeprefix('version.')} {v}" for k, v in sorted(tags.items())
                               if k.startswith("version."))),
    ]


def _write_report(pipeline: Pipeline, config: RunConfig, tracker: Tracker, evaluation: Evaluation,
                  history: dict[str, list[float]], test_metrics: dict[str, float], out_dir: Path,
                  facts: list[tuple[str, str]] = (), references: list[Reference] = ()) -> Path:
    figures = dict(evaluation.figures)
    if history:
        figures = {"learning_curves": reports.learning_curves(history), **figures}
    names = []
    for name, figure in figures.items():
        path = reports.save_figure(figure, out_dir / "plots" / f"{name}.png")
        reports.close(figure)
        names.append(f"plots/{path.name}")
    for name, content in evaluation.tables.items():
        (out_dir / "tables").mkdir(parents=True, exist_ok=True)
        (out_dir / "tables" / name).write_text(content, encoding="utf-8")
    (out_dir / "config.yaml").write_text(to_yaml(config), encoding="utf-8")
    report = out_dir / "report.html"
    report.write_text(reports.html_report(f"{pipeline.name}: {config.preset}", test_metrics, to_yaml(config),
                                          names, {f"tables/{n}": c for n, c in evaluation.tables.items()},
                                          evaluation.notes, facts, references), encoding="utf-8")
    for sub in ("plots", "tables"):
        if (out_dir / sub).exists():
            tracker.log_artifact(out_dir / sub, sub)
    tracker.log_artifact(out_dir / "config.yaml")
    tracker.log_artifact(report)
    return report


def _export(pipeline: Pipeline, model, splits: Splits, config: RunConfig, tracker: Tracker, out_dir: Path,
            test_metrics: dict[str, float]) -> tuple[Path, str | None]:
    """Write the export folder (what predict needs, `deepsuite.common.export`), then the MLflow model over it
    (`deepsuite.common.mlflow_model`) and the test metrics, linked to that model; returns (model.keras path,
    the model's models:/m-<id> URI or None when tracking.log_model is off)."""
    export_dir = out_dir / export.EXPORT_DIR
    model_path = export.write(export_dir, model, pipeline, splits.metadata, preset=config.preset,
                              run_id=tracker.run_id, dataset=splits.info.name,
                              config=config.model_dump(mode="json"), test_metrics=test_metrics)
    pipeline.export_extras(model, splits, config, export_dir)
    tracker.log_artifact(export_dir, export.EXPORT_DIR)
    if not config.tracking.log_model:
        tracker.log_metrics(test_metrics)
        return model_path, None
    info = splits.info
    model_uri = tracker.log_model(pipeline, export_dir, pipeline.request_example(splits), test_metrics,
                                  (info.name, info.source, info.digest))
    return model_path, model_uri
