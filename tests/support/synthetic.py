"""A tiny real pipeline for the reliability tests: seconds per run instead of a minute.

Resume after SIGKILL, Ctrl-C -> KILLED, concurrent runs and same-seed determinism are properties of the
runner, the tracker and the CLI, not of a domain; this pipeline exercises exactly those code paths (the
real `deepsuite run` process, the real fit with its backup and MLflow callbacks, evaluation, report and
export) on generated data, so the checks that used to train Fashion-MNIST CNNs run in the gating suite.

    python -m tests.support.synthetic run synthetic --preset smoke [deepsuite args...]
registers the pipeline as `synthetic` and runs the `deepsuite` CLI with the remaining arguments.
"""
from __future__ import annotations

import sys

import numpy as np
from pydantic import Field

from deepsuite.common.config import RunConfig, Section
from deepsuite.common.metrics import classification_metrics
from deepsuite.common.pipeline import DatasetInfo, Evaluation, Pipeline, Split, Splits, to_numpy

NAME = "synthetic"


class SyntheticData(Section):
    train_samples: int = Field(4000, ge=10)
    features: int = Field(16, ge=2)
    cache_dir: str | None = Field(None, description="unused (nothing is cached); the runner checks it is writable")


class SyntheticModel(Section):
    units: int = Field(32, ge=1)


class SyntheticConfig(RunConfig):
    data: SyntheticData = SyntheticData()
    model: SyntheticModel = SyntheticModel()


class SyntheticPipeline(Pipeline):
    """Three classes from a fixed random non-linear rule; an MLP learns it in a few epochs."""

    description = "generated 3-class data for the reliability tests"
    config_cls = SyntheticConfig
    presets = {
        "default": {"train": {"epochs": 6, "batch_size": 32, "verbose": 0}},
        "smoke": {"train": {"epochs": 2, "batch_size": 32, "verbose": 0}},
    }
    default_dataset = "generated"

    def load_data(self, config: SyntheticConfig) -> Splits:
        rule = np.random.default_rng(1234)  # the task is fixed; config.seed only changes init and order
        weights = rule.normal(size=(config.data.features, 3))
        n = config.data.train_samples + 1000

        x = rule.normal(size=(n, config.data.features)).astype("float32")
        y = np.argmax(np.tanh(x) @ weights + 0.3 * rule.normal(size=(n, 3)), axis=1).astype("int64")
        train, val, test = slice(0, n - 1000), slice(n - 1000, n - 500), slice(n - 500, n)
        info = DatasetInfo("generated", "tests.support.synthetic", f"{n}x{config.data.features}")
        return Splits(Split(x[train], y[train]), Split(x[val], y[val]), Split(x[test], y[test]), info)

    def build_model(self, config: SyntheticConfig, splits: Splits):
        import keras

        from deepsuite.common.training import optimizer, steps_per_epoch

        inputs = keras.Input((config.data.features,))
        hidden = keras.layers.Dense(config.model.units, activation="relu")(inputs)
        model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(hidden))
        steps = steps_per_epoch(len(splits.train), config.train.batch_size)
        model.compile(optimizer(config.train, steps), "sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    def evaluate(self, model, splits: Splits, config: SyntheticConfig) -> Evaluation:
        probs = to_numpy(model.predict(splits.test.x, verbose=0))
        return Evaluation(classification_metrics(splits.test.y, probs))


def register() -> None:
    from deepsuite.app import registry

    registry.register(NAME, "tests.support.synthetic:SyntheticPipeline")


if __name__ == "__main__":
    register()
    from deepsuite.app.cli import main

    sys.exit(main(sys.argv[1:]))
