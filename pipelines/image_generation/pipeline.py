"""Image generation end to end: images in [-1, 1] -> DCGAN (spectral norm, EMA generator) -> FID/KID, grids, `generate`.

The modules that import Keras (model, features, evaluation, inference) are imported when a method needs them,
so listing the pipeline does not load Keras.
"""
from __future__ import annotations

from deepsuite.common.commands import Command
from deepsuite.common.pipeline import Pipeline
from deepsuite.pipelines.image_generation import data
from deepsuite.pipelines.image_generation.config import PRESETS, ImageGenerationConfig, search_space
from deepsuite.pipelines.image_generation.contract import GenerateOptions, ImageGenerationMetadata


class ImageGenerationPipeline(Pipeline):
    description = "DCGAN image generator (spectral-norm discriminator, EMA generator), measured by FID/KID"
    config_cls = ImageGenerationConfig
    metadata_cls = ImageGenerationMetadata
    presets = PRESETS
    default_dataset = "Fashion-MNIST (Debian dataset-fashion-mnist, else Keras download)"
    monitor = "val_fid"   # Fréchet distance of EMA samples to the validation images: early stopping, tuning
    monitor_mode = "min"
    commands = (
        Command("generate", "sample images from the generator: n, seed, a PNG grid with --output",
                GenerateOptions, "generate", writes="on_request", example={"n": 16, "seed": 1}),
    )

    def load_data(self, config):
        return data.load_data(config)

    def build_model(self, config, splits):
        from deepsuite.pipelines.image_generation import features, model  # Keras loads when training

        classifier, _ = features.classifier(config, splits)
        return model.build_model(config, splits, features.extractor(classifier))

    def fit_data(self, splits, config):
        return data.fit_data(splits, config)

    def input_example(self, splits):
        import numpy as np

        return np.random.default_rng(0).standard_normal((2, splits.metadata.latent_dim)).astype("float32")

    def request_example(self, splits):
        """Rows are image counts (generate's first option); a seeded request for four images."""
        return [4], {"seed": 1}

    def search_space(self, hp, config):
        return search_space(hp, config)

    def evaluate(self, model, splits, config):
        from deepsuite.pipelines.image_generation import evaluation

        return evaluation.evaluate(model, splits, config)

    def generate(self, model, export, options):
        from deepsuite.pipelines.image_generation import inference

        return inference.generate(model, export, options)
