"""The keras_tuner.HyperModel over any pipeline: hp -> config -> build_model -> runner.fit_model.

Every trial is fitted by `deepsuite.common.runner.fit_model`, the suite's only fit path, so a trial stops on a NaN
loss, stops early on its validation metric, backs itself up for a mid-trial resume and logs each epoch
to its MLflow run exactly like `deepsuite run`. The data is loaded once per search and shared by all
trials; each build starts from a cleared Keras session (the tuner clears it) with the trial's seed and
precision policy.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt

from deepsuite.common import backend
from deepsuite.common.config import RunConfig
from deepsuite.common.pipeline import Pipeline, Splits
from deepsuite.common.runner import fit_model
from deepsuite.tuning.space import SearchSpace


class ObjectiveMissing(kt.errors.FatalError):
    """The objective is not among the metrics the pipeline's model reports: stop the whole search."""


@dataclass
class TrialContext:
    """What a running trial logs to: its MLflow run, its work folder, its timings."""

    trial_id: str
    tracker: Any                     # deepsuite.common.tracking.Tracker with the trial's child run active
    work_dir: Path
    logged_steps: set[int] = field(default_factory=set)   # epochs already in the run (a resumed trial)
    fit_seconds: float = 0.0
    objective_value: float | None = None
    epochs_run: int = 0
    marks: dict[str, float] = field(default_factory=dict)   # time.time() at each stage, for the overhead split

    def mark(self, stage: str) -> None:
        self.marks[stage] = time.time()


class PipelineHyperModel(kt.HyperModel):
    """Builds and fits one trial of `space.pipeline`; `trial` is set by the tuner around each trial."""

    def __init__(self, space: SearchSpace, objective: str, direction: str, device: str = "cpu"):
        super().__init__(name=space.pipeline.name, tunable=True)
        self.space = space
        self.pipeline: Pipeline = space.pipeline
        self.objective = objective
        self.direction = direction
        self.device = device
        self.trial: TrialContext | None = None
        self._splits: Splits | None = None

    @property
    def splits(self) -> Splits:
        """Loaded on first use and kept for the whole search (trials never reload data)."""
        if self._splits is None:
            self._splits = self.pipeline.load_data(self.space.base)
        return self._splits

    # -- configs ------------------------------------------------------------------------------------

    def trial_config(self, hp) -> RunConfig:
        """The config a trial trains with (Hyperband: its epoch budget is tuner/epochs)."""
        config = self.space.apply(hp)
        if "tuner/epochs" in hp.values:
            config = config.model_copy(deep=True)
            config.train.epochs = int(hp.values["tuner/epochs"])
        return config

    def _build_config(self, hp) -> RunConfig:
        """The config a trial's model and optimizer are built with.

        A Hyperband trial stops at tuner/epochs, but its learning-rate schedule spans the search's max
        epochs (every bracket's last round): a trial continued from tuner/initial_epoch gets the checkpoint's
        optimizer state back, step counter included (TrackedHyperband), so it carries on along the same
        schedule exactly as if it had trained straight through, like the untuned recipe it is compared with.
        """
        config = self.trial_config(hp)
        if "tuner/epochs" in hp.values:
            config = config.model_copy(deep=True)
            config.train.epochs = max(self.space.base.train.epochs, config.train.epochs)
        return config

    # -- keras_tuner.HyperModel ---------------------------------------------------------------------

    def build(self, hp):
        if self.trial is not None:
            self.trial.mark("build_start")
        config = self._build_config(hp)
        keras.utils.set_random_seed(config.seed)
        keras.mixed_precision.set_global_policy(backend.precision_policy(config.train.mixed_precision, self.device))
        model = self.pipeline.build_model(config, self.splits)
        if self.trial is not None:
            self.trial.mark("build_end")
        return model

    def fit(self, hp, model, *args, callbacks=(), epochs=None, initial_epoch=0, **kwargs):
        """Fit through runner.fit_model; return {objective: best epoch value} for the oracle."""
        trial = self.trial
        if trial is None:
            raise RuntimeError("PipelineHyperModel.fit needs a TrialContext (set by the tuner)")
        config = self.trial_config(hp).model_copy(deep=True)
        if epochs is not None:
            config.train.epochs = int(epochs)
        guard = ObjectiveGuard(self.objective, self.pipeline.name)
        history, seconds = fit_model(self.pipeline, model, self.splits, config, trial.tracker, trial.work_dir,
                                     extra_callbacks=(guard, *callbacks), initial_epoch=int(initial_epoch or 0),
                                     logged_steps=trial.logged_steps)
        values = [v for v in history.get(self.objective, []) if math.isfinite(v)]
        best = (max(values) if self.direction == "max" else min(values)) if values else float("nan")
        trial.fit_seconds += seconds
        trial.mark("fit_end")
        trial.objective_value = best
        trial.epochs_run += len(history.get("loss", []))
        return {self.objective: best}


class ObjectiveGuard(keras.callbacks.Callback):
    """After a trial's first epoch, check the objective is one of the metrics the model reports."""

    def __init__(self, objective: str, pipeline: str):
        super().__init__()
        self.objective, self.pipeline, self.checked = objective, pipeline, False

    def on_epoch_end(self, epoch, logs=None):
        if self.checked:
            return
        self.checked = True
        names = sorted(k for k in (logs or {}) if k != "learning_rate")
        if self.objective not in names:
            raise ObjectiveMissing(f"unknown objective {self.objective!r}: {self.pipeline} reports "
                                   f"{', '.join(names)} (pick one with --objective)")

