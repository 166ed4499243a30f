"""Image denoising end to end: clean photographs -> noisy patches on the fly -> residual CNN -> PSNR/SSIM.

Splits hold lists of clean float images (any sizes): `train` feeds the patch stream, `val` gives fixed
noisy patches for early stopping, `test` is denoised whole and scored beside the noisy input and
non-local means. `deepsuite denoise` runs the exported model over files of any size in tiles.
"""
from __future__ import annotations

from typing import Any

from deepsuite.common.commands import Command
from deepsuite.common.pipeline import Evaluation, FitData, Pipeline, Reference, Splits
from deepsuite.pipelines.image_denoising import config as cfg
from deepsuite.pipelines.image_denoising import data, evaluation, inference
from deepsuite.pipelines.image_denoising.contract import DenoiseOptions, ImageDenoisingMetadata


class ImageDenoisingPipeline(Pipeline):
    description = "Residual CNN denoiser (U-Net or DnCNN/FFDNet-style), PSNR/SSIM vs non-local means"
    config_cls = cfg.ImageDenoisingConfig
    metadata_cls = ImageDenoisingMetadata
    commands = (Command("denoise", "denoise images of any size with an image-denoising model", DenoiseOptions,
                        "denoise", writes="always", example={"inputs": [{"b64": "<base64 PNG>"}]}),)
    presets = cfg.PRESETS
    default_dataset = "scikit-image's sample photographs (skimage/data, CC0/public domain), held-out ones for test"
    monitor = "val_loss"
    monitor_mode = "min"
    references = (Reference("test_psnr", "29.92 dB", "python bench/image_denoising.py: default preset, Set12 "
                            "at Gaussian sigma=25 (noise not clipped), seed 42, 2-core CPU, 2026-12-02", "skimage",
                            source_has="set12"),)

    def load_data(self, config: cfg.ImageDenoisingConfig) -> Splits:
        return data.load_data(config)

    def build_model(self, config: cfg.ImageDenoisingConfig, splits: Splits):
        from deepsuite.pipelines.image_denoising.model import build  # Keras loads when training

        return build(config, splits)

    def fit_data(self, splits: Splits, config: cfg.ImageDenoisingConfig) -> FitData:
        return data.fit_data(splits, config)

    def evaluate(self, model, splits: Splits, config: cfg.ImageDenoisingConfig) -> Evaluation:
        return evaluation.evaluate(model, splits, config)

    def input_example(self, splits: Splits) -> Any:
        return data.input_example(splits)

    def search_space(self, hp, config: cfg.ImageDenoisingConfig) -> cfg.ImageDenoisingConfig:
        return cfg.search_space(hp, config)

    def denoise(self, model, export, options: DenoiseOptions) -> list[dict]:
        return inference.denoise(model, export, options)
