"""Image classification end to end: labelled images -> CNN -> accuracy, confusion matrix, errors grid."""
from __future__ import annotations

import numpy as np

from deepsuite.common.commands import Command
from deepsuite.common.pipeline import Pipeline, Reference
from deepsuite.pipelines.image_classification import data, evaluation, inference
from deepsuite.pipelines.image_classification.config import PRESETS, ImageClassificationConfig, search_space
from deepsuite.pipelines.image_classification.contract import ImageClassificationMetadata, PredictOptions


class ImageClassificationPipeline(Pipeline):
    description = "CNN image classifier (raw uint8 images in, class probabilities out)"
    config_cls = ImageClassificationConfig
    metadata_cls = ImageClassificationMetadata
    presets = PRESETS
    default_dataset = "Fashion-MNIST (Debian dataset-fashion-mnist, else Keras download)"
    monitor = "val_accuracy"
    monitor_mode = "max"
    references = (Reference("test_accuracy", "93.20 %", "python bench/image_classification.py: default preset, "
                            "9 bfloat16 epochs, the full 10,000-image test split, seed 42, 2-core CPU, 2026-12-03",
                            "fashion_mnist"),)
    commands = (
        Command("predict", "classify image files: the most likely classes with their probabilities",
                PredictOptions, "predict", example={"inputs": ["/path/to/shirt.png"], "top": 3}),
    )

    def load_data(self, config):
        return data.load_data(config)

    def build_model(self, config, splits):
        from deepsuite.pipelines.image_classification.model import build_model  # Keras loads when training

        return build_model(config, splits)

    def fit_data(self, splits, config):
        return data.fit_data(splits, config)

    def input_example(self, splits):
        return np.asarray(splits.test.head(4).x)  # decoded, also when the test split is streamed

    def search_space(self, hp, config):
        return search_space(hp, config)

    def evaluate(self, model, splits, config):
        return evaluation.evaluate(model, splits, config)

    def predict(self, model, export, options):
        return inference.predict(model, export, options)
