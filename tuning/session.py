"""One search, as every process taking part in it sees it: `SearchSession`, built from `SearchOptions`.

A one-process search, a distributed chief and each worker all start the same way: the pipeline, the base
config (preset -> --config -> --set, with the search's epoch budget), the search's name (the same command
gives the same name, so it resumes), the tracker and the tuner project folder. Once the process knows its
parent run (the chief and a one-process search open it; a worker finds it), `define()` checks the tuner,
the objective and the space, and `build_tuner()` assembles the hypermodel, oracle, progress, trial runs and
tuner, the same for every role. search.py (one process, chief) and worker.py drive a session; the parts it
is built from (tuners, trials, best) read what they need from it.
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

from deepsuite.common import distribution
from deepsuite.common.config import RunConfig, flatten, parse_set, resolve
from deepsuite.common.errors import ConfigError
from deepsuite.common.pipeline import Pipeline
from deepsuite.common.tracking import PIPELINE_TAG, Tracker
from deepsuite.tuning.hypermodel import PipelineHyperModel
from deepsuite.tuning.progress import Progress
from deepsuite.tuning.space import SearchSpace, parse_pins
from deepsuite.tuning.trials import KIND_TAG, SEARCH_TAG, TrialRuns
from deepsuite.tuning.tuners import Budget, check_tuner, make_oracle, make_tuner

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


class SearchSession:
    """One search in this process: what defines it, where it is recorded, and (once built) its tuner.

    `pipeline` is the instance to search (the app finds it by name; tests and benches may pass a subclass); `on_trial_end` is called
    with each trial's numbers in the process that ran it.
    """

    def __init__(self, options: SearchOptions, pipeline: Pipeline,
                 echo: Callable[[str], None] = print, on_trial_end: Callable[[dict], None] | None = None):
        self.options = options
        self.pipeline = pipeline
        self.base, self.set_keys = base_config(self.pipeline, options)
        self.name = search_name(options, self.base)
        self.tracker = Tracker(options.tracking_uri, options.store)
        self.experiment = self.base.tracking.experiment or self.pipeline.name
        self.project_dir = Path(options.store) / "tuning" / self.pipeline.name / self.name
        self.tags = {KIND_TAG: "search", SEARCH_TAG: self.name, PIPELINE_TAG: self.pipeline.name}
        self.echo = echo
        self.on_trial_end = on_trial_end
        self.parent_run_id: str | None = None       # opened by the chief / one-process search, found by workers
        self.tuner_id = "tuner0"                    # a worker's id on a worker
        self.worker_echo: Callable[[str], None] | None = None   # workers print a line per trial they ran
        # define():
        self.objective = self.direction = ""
        self.space: SearchSpace | None = None
        self.hp_space = None                        # keras_tuner.HyperParameters the space declares
        self.budget: Budget | None = None
        self.planned: int | None = None
        # build_tuner():
        self.hypermodel: PipelineHyperModel | None = None
        self.progress: Progress | None = None
        self.runs: TrialRuns | None = None
        self.tuner = None

    # -- what the search is ---------------------------------------------------------------------

    def define(self) -> None:
        """Check the tuner, objective and space (a ConfigError naming the fix) and fix the budget."""
        options = self.options
        check_tuner(options.tuner)
        self.objective, self.direction = resolve_objective(self.pipeline, options.objective, options.direction)
        self.space = SearchSpace(self.pipeline, self.base, parse_pins(options.fixes), self.set_keys,
                                 options.tune_precision)
        self.hp_space = self.space.declare()
        max_trials = options.max_trials or (None if options.tuner == "hyperband" else DEFAULT_MAX_TRIALS)
        self.budget = Budget(max_trials, self.base.train.epochs, options.factor, options.max_failures)
        self.planned = self.budget.planned_trials(options.tuner)

    def log_definition(self) -> None:
        """The search's definition on its parent run: `search.*` params, the base config, the space."""
        options, budget, space_json = self.options, self.budget, self.space.as_json(self.hp_space)
        self.tracker.log_params({
            "search.name": self.name, "search.tuner": options.tuner, "search.objective": self.objective,
            "search.direction": self.direction, "search.max_trials": budget.max_trials,
            "search.max_epochs": budget.max_epochs, "search.planned_trials": self.planned,
            "search.space": space_json, "search.pinned": json.dumps(self.space.pins),
            **({"search.factor": budget.factor} if options.tuner == "hyperband" else {}),
            **flatten(self.base.model_dump(mode="json"))})
        self.tracker.log_text(space_json, "search_space.json")

    # -- the tuner ------------------------------------------------------------------------------

    def build_tuner(self, device: str):
        """Hypermodel, oracle, progress, trial runs and the tuner over the project folder (its state reloaded).

        Keras Tuner reads its role (chief, worker, alone) from the environment here: set it first
        (distributed.set_role). On a worker the oracle built here is replaced by a client of the chief's.
        """
        self.hypermodel = PipelineHyperModel(self.space, self.objective, self.direction, device)
        oracle = make_oracle(self.options.tuner, self.objective, self.direction, self.budget, self.base.seed,
                             self.hp_space)
        self.progress = Progress(self.planned, self.objective, self.echo)
        self.runs = TrialRuns(self)
        oracle.reporter = self.runs.report
        self.tuner = make_tuner(self.options.tuner, self.runs, oracle, self.hypermodel, self.project_dir)
        return self.tuner

    def resume(self) -> None:
        """In the process that owns the oracle: count the trials already ended, close their runs a crash
        left RUNNING, and look up the search's trial runs once."""
        oracle = self.tuner.oracle
        self.progress.already_done = len(oracle.end_order)
        if self.progress.already_done:
            self.echo(f"resumed: {self.progress.already_done} trial(s) already ended are not run again")
        self.runs.reconcile(oracle)
        self.runs.load_known_runs()

    def load_data(self) -> None:
        """Once per search, before the first trial (so no trial's time includes it); then freeze the heap.

        gc.freeze() moves everything alive now (TensorFlow, MLflow, the data) out of the garbage collector's
        view: the full collection before each trial's build (which frees the previous trial's model) then
        scans only what trials created, milliseconds instead of seconds.
        """
        started = time.time()
        splits = self.hypermodel.splits
        self.echo(f"data: {splits.info.name} from {splits.info.source} - "
                  + ", ".join(f"{k} {v}" for k, v in splits.sizes().items())
                  + f" ({time.time() - started:.1f}s, shared by all trials)")
        gc.collect()
        gc.freeze()

    def run_trials(self) -> None:
        """The tuner's search loop: trials until the oracle (here or at the chief) has none left.

        Every trial builds and fits its model under the base config's device plan (`train.devices`, as
        `deepsuite run` does); a worker of `tune --workers` that was pinned to one GPU sees one device.
        """
        try:
            with distribution.scope(distribution.plan(self.base.train)):
                self.tuner.search(verbose=0)
        finally:
            gc.unfreeze()

    def abort(self, status: str, reason: str) -> None:
        """The search stopped mid-trial (Ctrl-C, a fatal error): close the open trial run, if any."""
        if self.runs is not None:
            self.runs.abort(status, reason)
