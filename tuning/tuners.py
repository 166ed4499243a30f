"""Random, Bayesian and Hyperband tuners whose trials report to a `trials.TrialRuns`.

Keras Tuner's own classes do the searching; two thin mixins add the suite's behaviour:
- `TrialHooks` (on the tuner, where a trial runs): opens/reopens the trial's MLflow run, fits it, closes
  it with its status; reads the space from the oracle instead of building a throw-away model.
- `ReportingOracle` (on the oracle, in the process that owns the search): after each ended trial, logs
  the best value so far to the parent run and prints the progress line. In a distributed search the
  oracle lives in the chief, so progress and the parent run have one writer.
"""
from __future__ import annotations

import contextlib
import difflib
import math
import random
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import keras
import keras_tuner as kt
from keras_tuner.src import backend as kt_backend
from keras_tuner.src import config as kt_config
from keras_tuner.src import utils as kt_utils

from deepsuite.common.errors import ConfigError, DeepsuiteError

TUNERS = ("random", "bayesian", "hyperband")
kt_config.DEBUG = False  # failed trials: the reason goes to the progress line, the traceback to MLflow


def best_completed(oracle):
    """The best completed trial, or None (Oracle.get_best_trials pads its answer with failed trials)."""
    best = oracle.get_best_trials(1)
    if best and best[0].status == "COMPLETED" and best[0].score is not None and math.isfinite(best[0].score):
        return best[0]
    return None


def check_tuner(kind: str) -> str:
    if kind not in TUNERS:
        close = difflib.get_close_matches(str(kind), TUNERS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown tuner {kind!r}{hint} (valid: {', '.join(TUNERS)})")
    if kind == "bayesian":
        try:
            import sklearn.gaussian_process  # noqa: F401 - keras-tuner's Bayesian oracle needs it
        except ImportError:
            raise DeepsuiteError("--tuner bayesian needs scikit-learn (pip install scikit-learn); "
                                 "random and hyperband work without it") from None
    return kind


def hyperband_trials(max_epochs: int, factor: int, iterations: int = 1) -> int:
    """How many trials one Hyperband run creates (the oracle's bracket arithmetic)."""
    brackets, epochs = 0, max_epochs
    while epochs >= 1:
        epochs /= factor
        brackets += 1
    end0 = math.ceil(1 + math.log(max_epochs, factor))
    total = 0
    for bracket in range(brackets):
        total += sum(math.ceil(end0 / (bracket + 1) * factor ** (bracket - r)) for r in range(bracket + 1))
    return total * iterations


def custom_gradient_names() -> set[str]:
    return set(_gradient_registry() or ())


def release_tensorflow_graphs(keep: set[str]) -> None:
    """Let the previous trial's TensorFlow graphs be freed (a TensorFlow leak, worked around).

    In graph mode `tf.custom_gradient` registers a "CustomGradient-<n>" gradient function in a global
    registry each time a function is traced, and never removes it; its closure holds the whole traced
    train step, so every trial would leave ~25 MB behind. Between trials those graphs are dead (the
    model is gone), so their entries are dropped; `keep` are the ones that existed before the search.
    """
    registry = _gradient_registry()
    if registry is not None:
        for name in [n for n in registry if n.startswith("CustomGradient-") and n not in keep]:
            del registry[name]


def fresh_session(keep: set[str]) -> None:
    """Before building a model in the same process: drop the previous trial's graphs, then Keras' state."""
    release_tensorflow_graphs(keep)
    keras.backend.clear_session(free_memory=True)


@contextlib.contextmanager
def weights_only_restore():
    """Loading a trial checkpoint into a model for inference (the final best model) needs its weights, not its
    optimizer state, so Keras' warning that it skipped the optimizer is noise in our output."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        yield


def _gradient_registry():
    if keras.backend.backend() != "tensorflow":
        return None
    try:
        from tensorflow.python.framework import ops

        return ops._gradient_registry._registry
    except (ImportError, AttributeError):  # another TensorFlow layout: nothing to release
        return None


class ReportingOracle:
    """Calls `reporter(trial)` once a trial has really ended (not when it is queued for a retry)."""

    reporter: Callable | None = None

    def end_trial(self, trial):
        try:
            super().end_trial(trial)
        finally:
            ended = self.trials.get(trial.trial_id)
            if self.reporter is not None and ended is not None and trial.trial_id not in self._retry_queue:
                self.reporter(self, ended)


class StartsFromDefaults:
    """The search's first trial takes every hyperparameter's default instead of a random draw.

    The pipelines' spaces default to the base config's values (deepsuite.common.config.recipe_default), so the
    first trial is the recipe being tuned (the preset plus --set): the search starts from the known
    point and explores around it. Later trials are the oracle's own (random, Bayesian, Hyperband).
    """

    def _random_values(self):
        if self.trials:  # create_trial adds a trial only after populate_space: empty means the first
            return super()._random_values()
        defaults = self.hyperparameters.copy()
        defaults.ensure_active_values()
        return {hp.name: defaults.values[hp.name] for hp in defaults.space if defaults.is_active(hp)}


class ExploresAroundTheBest:
    """Hyperband: half of its new configurations are the best one so far with one or two values redrawn.

    Plain Hyperband draws every configuration at random, and with a budget of ~20 trials it rarely lands
    next to a good recipe (measured in bench/tuning.py: none of 19 random draws matched the recipe the
    search started from). Redrawing one or two hyperparameters of the best completed trial (a local
    search step, as in SMAC or evolutionary search) spends the other half of the draws where the search
    already knows it is good; successive halving then decides which of them earn more epochs.
    """

    local_share = 0.5

    def _random_values(self):
        best = best_completed(self) if self.trials else None
        chance = random.Random(self._seed_state)
        self._seed_state += 1
        if best is None or chance.random() >= self.local_share:
            return super()._random_values()
        tunable = [hp for hp in self.hyperparameters.space
                   if type(hp).__name__ != "Fixed" and hp.name in best.hyperparameters.values]
        for _ in range(self._max_collisions):
            values = {k: v for k, v in best.hyperparameters.values.items() if not k.startswith("tuner/")}
            for hp in chance.sample(tunable, k=min(len(tunable), chance.choice([1, 2]))):
                values[hp.name] = hp.random_sample(self._seed_state)
                self._seed_state += 1
            # a stepped Float redrawn onto its old value comes back as 0.30000000000000004, which the
            # oracle's duplicate check (an exact hash) would let through as a new configuration
            if not _same_values(values, best.hyperparameters.values) and not self._duplicate(values):
                return values
        return super()._random_values()


def _same_values(values: dict, other: dict) -> bool:
    def same(a, b):
        if isinstance(a, float) or isinstance(b, float):
            return isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
        return a == b
    return all(same(value, other.get(name)) for name, value in values.items())


_BASES = {"random": kt.oracles.RandomSearchOracle, "bayesian": kt.oracles.BayesianOptimizationOracle,
          "hyperband": kt.oracles.HyperbandOracle}
_MIXINS = {"random": (StartsFromDefaults,), "bayesian": (StartsFromDefaults,),
           "hyperband": (ExploresAroundTheBest, StartsFromDefaults)}
_ORACLES = {kind: type(f"Reporting{base.__name__}", (ReportingOracle, *_MIXINS[kind], base), {})
            for kind, base in _BASES.items()}


@dataclass(frozen=True)
class Budget:
    """What a search may spend, as its oracle counts it."""

    max_trials: int | None   # random/bayesian: this many trials; hyperband: a cap (None: one set of brackets)
    max_epochs: int          # epochs per trial; hyperband: the most any trial gets
    factor: int = 3          # Hyperband's reduction factor
    max_failures: int = 3    # failed trials in a row that stop the search

    def planned_trials(self, kind: str) -> int | None:
        """How many trials the search will run, for the progress line's i/N (None: unknown)."""
        if kind != "hyperband":
            return self.max_trials
        return self.max_trials or hyperband_trials(self.max_epochs, self.factor)


def make_oracle(kind: str, objective: str, direction: str, budget: Budget, seed: int, space):
    """The oracle for `kind`; Hyperband is capped at max_trials and iterates until it reaches it."""
    common = dict(objective=kt.Objective(objective, direction), seed=seed or None, hyperparameters=space,
                  max_consecutive_failed_trials=budget.max_failures)
    if kind == "hyperband":
        if budget.factor < 2:
            raise ConfigError(f"--factor {budget.factor}: Hyperband's reduction factor must be at least 2")
        per_iteration = hyperband_trials(budget.max_epochs, budget.factor)
        iterations = max(1, math.ceil(budget.max_trials / per_iteration)) if budget.max_trials else 1
        oracle = _ORACLES[kind](max_epochs=budget.max_epochs, factor=budget.factor, hyperband_iterations=iterations,
                                **common)
        oracle.max_trials = budget.max_trials  # Oracle.create_trial stops the search at this many trials
        return oracle
    return _ORACLES[kind](max_trials=budget.max_trials, **common)


class TrialHooks:
    """Mixin for a keras_tuner Tuner: every trial becomes an MLflow run via `self.runs`."""

    def __init__(self, runs, oracle, hypermodel, project_dir: Path):
        self.runs = runs
        self.gradients_before_search = custom_gradient_names()
        kt.Tuner.__init__(self, oracle=oracle, hypermodel=hypermodel, directory=str(project_dir.parent),
                          project_name=project_dir.name)

    def _populate_initial_space(self):
        """The oracle was given the declared space; building a model only to discover it is wasted work."""

    def _try_build(self, hp):
        """Keras Tuner's, with one garbage collection instead of two (and gc.freeze() keeps it short),
        after releasing the previous trial's graphs so memory stays flat from trial to trial."""
        fresh_session(self.gradients_before_search)
        return self._build_hypermodel(hp)

    def _configure_tensorboard_dir(self, callbacks, trial, execution=0):
        """No TensorBoard here (MLflow records the trials); Keras Tuner would import tensorboard for it."""

    def on_search_begin(self):
        super().on_search_begin()
        self.save()  # a kill during the first trial still leaves a project this command resumes

    def pre_create_trial(self):
        self.runs.before_trial()

    def on_trial_begin(self, trial):
        super().on_trial_begin(trial)
        self.hypermodel.trial = self.runs.begin(trial, Path(self.get_trial_dir(trial.trial_id)) / "work")

    def on_trial_end(self, trial):
        context = self.hypermodel.trial
        try:
            super().on_trial_end(trial)  # the oracle records the result and saves its state first
        finally:
            if context is not None:
                context.mark("oracle_end")
            self.hypermodel.trial = None
            self.runs.end(trial, context)


class TrackedTuner(TrialHooks, kt.Tuner):
    """Random search or Bayesian optimisation (the oracle decides)."""


class TrackedHyperband(TrialHooks, kt.Hyperband):
    """Hyperband: kt.Hyperband's run_trial passes epochs/initial_epoch and warm-starts from a past trial."""

    def _build_hypermodel(self, hp):
        """Keras Tuner's warm start, with the optimizer state restored too.

        kt.Hyperband loads the past trial's checkpoint into a model whose optimizer has no variables yet,
        so only the weights come back (Keras warns that it skipped the optimizer) and the continued trial
        restarts Adam's moments and its schedule's step counter from zero. Building the optimizer first
        makes the same file restore both: with PipelineHyperModel._build_config's schedule over the max
        epochs, continuing a trial is the same as having trained it straight through.
        """
        model = kt.Tuner._build_hypermodel(self, hp)
        if "tuner/trial_id" in hp.values:
            past = hp.values["tuner/trial_id"]
            if kt_backend.config.multi_backend():
                model.build_from_config(kt_utils.load_json(self._get_build_config_fname(past)))
            optimizer = getattr(model, "optimizer", None)
            if optimizer is not None and not optimizer.built:
                optimizer.build(model.trainable_variables)
            model.load_weights(self._get_checkpoint_fname(past))
        return model


def make_tuner(kind: str, runs, oracle, hypermodel, project_dir: Path):
    """The tuner of `kind` over `project_dir` (reloading the oracle's state and trials found there)."""
    cls = TrackedHyperband if kind == "hyperband" else TrackedTuner
    return cls(runs, oracle, hypermodel, project_dir)
