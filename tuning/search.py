"""`deepsuite tune`: one search = one MLflow parent run + one Keras Tuner project, both found again on re-run.

The search is named from everything that defines it (pipeline, tuner, objective, budget, preset, --set,
--fix), so running the same command after a crash or Ctrl-C reopens the same parent run and reloads the
tuner project under <store>/tuning/<pipeline>/<name>: completed trials are not re-run, the trial that
was cut short is retried into its own MLflow run. As in `deepsuite run`, the parent run is opened
before anything is checked, so a bad tuner, objective or space leaves a FAILED run with the reason.
"""
from __future__ import annotations

import gc
import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from deepsuite.common import backend, registry
from deepsuite.common.config import RunConfig, flatten, parse_set, resolve
from deepsuite.common.errors import ConfigError, DeepsuiteError
from deepsuite.common.pipeline import Pipeline
from deepsuite.common.tracking import PIPELINE_TAG, Tracker
from deepsuite.tuning import distributed
from deepsuite.tuning.space import SearchSpace, parse_pins
from deepsuite.tuning.trials import KIND_TAG, SEARCH_TAG

DEFAULT_MAX_TRIALS = 10


@dataclass
class SearchOptions:
    pipeline: str
    tuner: str = "hyperband"
    objective: str | None = None
    direction: str | None = None
    max_trials: int | None = None        # random/bayesian: default 10; hyperband: a cap on its brackets
    max_epochs: int | None = None        # default: the preset's train.epochs
    factor: int = 3
    preset: str | None = None
    config_file: str | None = None
    overrides: list[str] = field(default_factory=list)
    fixes: list[str] = field(default_factory=list)
    name: str | None = None
    tune_precision: bool = False
    max_failures: int = 3
    alias: str = "best"
    tracking_uri: str | None = None
    store: Path = Path("mlruns")
    distributed: str | None = None       # None, "chief" or "worker"
    host: str = "0.0.0.0"
    port: int = 8000
    chief: str | None = None
    worker_id: str | None = None
    connect_timeout: float = 60.0

    @classmethod
    def from_namespace(cls, args) -> "SearchOptions":
        names = set(cls.__dataclass_fields__)
        values = {k: v for k, v in vars(args).items() if k in names}
        values["config_file"] = getattr(args, "config", None)
        return cls(**values)


@dataclass
class SearchResult:
    search_name: str
    parent_run_id: str
    project_dir: Path
    best: object | None = None          # deepsuite.tuning.best.BestModel
    trials_run: int = 0


def resolve_objective(pipeline: Pipeline, objective: str | None, direction: str | None) -> tuple[str, str]:
    """The objective metric and its direction: the pipeline's monitor by default, inferred for others."""
    name = objective or pipeline.monitor
    if not re.fullmatch(r"[A-Za-z][\w./-]*", name):
        raise ConfigError(f"unknown objective {name!r}: expected a metric name such as {pipeline.monitor!r}")
    if direction not in (None, "min", "max"):
        raise ConfigError(f"--direction {direction!r}: expected min or max")
    if direction is None:
        if name.removeprefix("val_") == pipeline.monitor.removeprefix("val_"):
            direction = pipeline.monitor_mode
        else:
            direction = "min" if re.search(r"loss|error|mse|mae|perplexity|crossentropy", name) else "max"
    return name, direction


def base_config(pipeline: Pipeline, options: SearchOptions) -> tuple[RunConfig, dict]:
    """Preset + file + --set, with the search's epoch budget; trials are quiet unless --set train.verbose."""
    config = resolve(pipeline.config_cls, pipeline.presets, options.preset, options.config_file, options.overrides)
    set_keys = {".".join(path): value for path, value in map(parse_set, options.overrides)}
    config = config.model_copy(deep=True)
    if options.max_epochs is not None:
        if options.max_epochs < 1:
            raise ConfigError(f"--max-epochs {options.max_epochs}: must be at least 1")
        config.train.epochs = options.max_epochs
    if "train.verbose" not in set_keys:
        config.train.verbose = 0
    if options.max_trials is not None and options.max_trials < 1:
        raise ConfigError(f"--max-trials {options.max_trials}: must be at least 1")
    return config, set_keys


def search_name(options: SearchOptions, config: RunConfig) -> str:
    """Readable and stable: the same command gives the same name, so it resumes the same search."""
    if options.name:
        if not re.fullmatch(r"[\w.-]+", options.name):
            raise ConfigError(f"--name {options.name!r}: use letters, digits, '.', '_' or '-'")
        return options.name
    file_text = Path(options.config_file).read_text(encoding="utf-8") if options.config_file else ""
    key = json.dumps([options.pipeline, options.tuner, options.objective, options.direction, options.max_trials,
                      options.max_epochs, options.factor, config.preset, file_text, options.overrides,
                      options.fixes, options.tune_precision], sort_keys=True)
    return f"{options.tuner}-{config.preset}-{hashlib.sha1(key.encode()).hexdigest()[:6]}"


def run_search(options: SearchOptions, echo: Callable[[str], None] = print,
               on_trial_end: Callable[[dict], None] | None = None, pipeline: Pipeline | None = None) -> SearchResult:
    """Run (or resume) a search; `pipeline` may be given as an instance (tests use a subclass)."""
    pipeline = pipeline or registry.get(options.pipeline)
    base, set_keys = base_config(pipeline, options)
    name = search_name(options, base)
    tracker = Tracker(options.tracking_uri, options.store)
    experiment = base.tracking.experiment or pipeline.name
    project_dir = Path(options.store) / "tuning" / pipeline.name / name
    search_tags = {KIND_TAG: "search", SEARCH_TAG: name, PIPELINE_TAG: pipeline.name}
    if options.distributed == "worker":
        from deepsuite.tuning.worker import run_worker

        return run_worker(options, pipeline, base, set_keys, name, tracker, experiment, project_dir, echo,
                          on_trial_end)
    if options.distributed not in (None, "chief"):
        raise ConfigError(f"--distributed {options.distributed!r}: expected chief or worker")

    found = tracker.find_runs(experiment, search_tags, max_results=1)
    if found and found[0].info.status == "FINISHED":
        tags = found[0].data.tags
        echo(f"search {name} already finished (run {found[0].info.run_id}): best trial id "
             f"{tags.get('deepsuite.best_trial')} {tags.get('deepsuite.best_value')}; "
             f"{tags.get('deepsuite.registered', 'not registered')}. Use --name to start another search.")
        return SearchResult(name, found[0].info.run_id, project_dir)
    env_tags = backend.configure(base.seed, base.deterministic, False)
    tracker.start(experiment, f"search-{name}", {**search_tags, "deepsuite.preset": base.preset,
                                                  "deepsuite.tuner": options.tuner, **env_tags},
                  description=f"{options.tuner} search over {pipeline.name} (preset {base.preset})",
                  resume_run_id=found[0].info.run_id if found else None)
    parent_id = tracker.run_id
    echo(f"{'resuming' if found else 'starting'} search {name}: MLflow run {parent_id} in {tracker.uri}; "
         f"tuner project {project_dir}")
    runs = None
    try:
        runs, tuner, oracle = _prepare(options, pipeline, base, set_keys, name, tracker, experiment,
                                       project_dir, parent_id, env_tags["device"], echo, on_trial_end)
        if options.distributed == "chief":
            echo(f"chief serving search {name} on {options.host}:{options.port}; start workers with the same "
                 f"arguments plus --distributed worker --chief <this host>:{options.port}")
        if options.distributed != "chief":  # the chief runs no trials; it loads data for the best model only
            load_data_once(tuner.hypermodel, echo)
        try:
            tuner.search(verbose=0)
        finally:
            gc.unfreeze()
        from deepsuite.tuning.best import finalize

        best = finalize(tuner, oracle, tuner.hypermodel, tracker, project_dir, options.alias, name, echo)
        _print_best(best, pipeline, echo)
        tracker.end("FINISHED", f"completed: {len(oracle.end_order)} trials, best trial id {best.trial_id} "
                                f"{runs.objective}={best.value:.4f}")
        return SearchResult(name, parent_id, project_dir, best, runs.progress.done_here)
    except KeyboardInterrupt:
        reason = "interrupted by the user (Ctrl-C); run the same command again to continue the search"
        if runs is not None:
            runs.abort("KILLED", reason)
        tracker.end("KILLED", reason)
        raise
    except BaseException as exc:
        error = _user_error(exc, options)
        if runs is not None:
            runs.abort("FAILED", str(error))
        tracker.end("FAILED", f"{type(error).__name__}: {error}")
        if error is exc:
            raise
        raise error from None


def _prepare(options, pipeline, base, set_keys, name, tracker, experiment, project_dir, parent_id, device, echo,
             on_trial_end):
    """Check the request, log the search's definition, and build the tuner (reloading its project)."""
    from deepsuite.tuning.hypermodel import PipelineHyperModel
    from deepsuite.tuning.progress import Progress
    from deepsuite.tuning.trials import TrialRuns
    from deepsuite.tuning.tuners import check_tuner, make_oracle, make_tuner, planned_trials

    check_tuner(options.tuner)
    objective, direction = resolve_objective(pipeline, options.objective, options.direction)
    space = SearchSpace(pipeline, base, parse_pins(options.fixes), set_keys, options.tune_precision)
    hp_space = space.declare()
    max_trials = options.max_trials or (None if options.tuner == "hyperband" else DEFAULT_MAX_TRIALS)
    planned = planned_trials(options.tuner, max_trials, base.train.epochs, options.factor)
    tracker.log_params({"search.name": name, "search.tuner": options.tuner, "search.objective": objective,
                        "search.direction": direction, "search.max_trials": max_trials,
                        "search.max_epochs": base.train.epochs, "search.planned_trials": planned,
                        "search.space": space.as_json(hp_space), "search.pinned": json.dumps(space.pins),
                        **({"search.factor": options.factor} if options.tuner == "hyperband" else {}),
                        **flatten(base.model_dump(mode="json"))})
    tracker.log_text(space.as_json(hp_space), "search_space.json")
    if options.distributed == "chief":
        distributed.require_grpc()
        distributed.check_port_free(options.host, options.port)
    distributed.set_role(options.distributed, options.host, options.port)

    hypermodel = PipelineHyperModel(space, objective, direction, device)
    oracle = make_oracle(options.tuner, objective, direction, max_trials, base.train.epochs, options.factor,
                         base.seed, hp_space, options.max_failures)
    progress = Progress(planned, objective, echo)
    runs = TrialRuns(tracker, experiment, parent_id, name, hypermodel, progress)
    runs.on_trial_end = on_trial_end
    oracle.reporter = runs.report
    tuner = make_tuner(options.tuner, runs, oracle, hypermodel, project_dir.parent, project_dir.name)
    progress.already_done = len(tuner.oracle.end_order)
    if progress.already_done:
        echo(f"resumed: {progress.already_done} trial(s) already ended are not run again")
    runs.reconcile(tuner.oracle)
    runs.load_known_runs()
    return runs, tuner, tuner.oracle


def load_data_once(hypermodel, echo: Callable[[str], None]) -> None:
    """Once per search, before the first trial (so no trial's time includes it); then freeze the heap.

    gc.freeze() moves everything alive now (TensorFlow, MLflow, the data) out of the garbage collector's
    view: the full collection before each trial's build (which frees the previous trial's model) then
    scans only what trials created, milliseconds instead of seconds.
    """
    import gc

    started = time.time()
    splits = hypermodel.splits
    echo(f"data: {splits.info.name} from {splits.info.source} - "
         + ", ".join(f"{k} {v}" for k, v in splits.sizes().items()) + f" ({time.time() - started:.1f}s, shared by all trials)")
    gc.collect()
    gc.freeze()


def _user_error(exc: BaseException, options: SearchOptions) -> BaseException:
    """Keras Tuner's own errors, said in the suite's terms (one line for the CLI)."""
    from deepsuite.tuning.hypermodel import ObjectiveMissing

    if isinstance(exc, ObjectiveMissing):
        return ConfigError(str(exc))
    if isinstance(exc, RuntimeError) and "consecutive failures" in str(exc):
        from deepsuite.tuning.trials import failure_reason

        last = failure_reason(str(exc).split("\n", 1)[1] if "\n" in str(exc) else "")
        return DeepsuiteError(f"search stopped: {options.max_failures} trials failed in a row (last: {last}); "
                              "fix the search space or raise --max-failures")
    return exc


def _print_best(best, pipeline: Pipeline, echo: Callable[[str], None]) -> None:
    metrics = "  ".join(f"{k}={v:.4f}" for k, v in best.test_metrics.items())
    echo(f"best model test metrics: {metrics}")
    if best.registered:
        echo(f"registered {best.registered} (version {best.version}); "
             f"try: deepsuite predict {best.registered} <input>")
