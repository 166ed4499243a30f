"""Image denoising end to end: clean photographs -> noisy patches on the fly -> residual CNN -> PSNR/SSIM.

Splits hold lists of clean float images (any sizes): `train` feeds the patch stream, `val` gives fixed
noisy patches for early stopping, `test` is denoised whole and scored beside the noisy input and
non-local means. `deepsuite denoise` runs the exported model over files of any size in tiles.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from deepsuite.common.data.cache import array_digest
from deepsuite.common.errors import DataError
from deepsuite.common.pipeline import DatasetInfo, Evaluation, FitData, Pipeline, Split, Splits
from deepsuite.common.training import optimizer
from deepsuite.pipelines.image_denoising import config as cfg
from deepsuite.pipelines.image_denoising import data as images_lib
from deepsuite.pipelines.image_denoising.noise import describe


class ImageDenoisingPipeline(Pipeline):
    description = "Residual CNN denoiser (U-Net or DnCNN/FFDNet-style), PSNR/SSIM vs non-local means"
    config_cls = cfg.DenoisingConfig
    presets = cfg.PRESETS
    default_dataset = "scikit-image's sample photographs (skimage/data, CC0/public domain), held-out ones for test"
    monitor = "val_loss"
    monitor_mode = "min"

    def load_data(self, config: cfg.DenoisingConfig) -> Splits:
        from deepsuite.pipelines.image_denoising.patches import usable

        data = config.data
        train_images, train_names, source = images_lib.load_training_images(data.source, data.channels,
                                                                            data.cache_dir)
        if data.max_train_images:
            train_images, train_names = train_images[: data.max_train_images], train_names[: data.max_train_images]
        train_images, train_names, dropped = usable(train_images, train_names, data.patch_size)
        keep, held = images_lib.split_by_image(len(train_images), data.val_fraction, config.seed)
        val_images = [train_images[i] for i in held] or [train_images[i] for i in keep]
        val_names = [train_names[i] for i in held]
        test_images, test_names, test_source = images_lib.load_test_images(data.test_folder, data.channels)
        if data.max_test_images:
            test_images, test_names = test_images[: data.max_test_images], test_names[: data.max_test_images]
        small = [n for n, im in zip(test_names, test_images) if min(im.shape[:2]) < 7]
        if small:
            raise DataError(f"test images {small} are smaller than 7x7 pixels, too small for SSIM")
        info = DatasetInfo(
            name=Path(data.source.partition(":")[2]).name if data.source.startswith("folder:") else data.source,
            source=f"{source}; test: {test_source}",
            digest=array_digest(*[im for im in train_images], *[im for im in test_images]),
            metadata={"channels": data.channels, "size_multiple": config.model.size_multiple(),
                      "noise": config.noise.model_dump(mode="json"), "noise_label": describe(config.noise),
                      "train_images": [train_names[i] for i in keep], "val_images": val_names,
                      "skipped_small_images": dropped, "test_images": test_names})
        return Splits(Split([train_images[i] for i in keep], None), Split(val_images, None),
                      Split(test_images, test_names), info)

    def build_model(self, config: cfg.DenoisingConfig, splits: Splits):
        from deepsuite.pipelines.image_denoising.model import build_denoiser

        model = build_denoiser(config.data.channels, config.model)
        steps = len(self._stream(splits, config))
        model.compile(optimizer=optimizer(config.train, steps), loss="mae" if config.model.loss == "l1" else "mse")
        return model

    def _stream(self, splits: Splits, config: cfg.DenoisingConfig):
        from deepsuite.pipelines.image_denoising.patches import NoisyPatches

        data = config.data
        return NoisyPatches(splits.train.x, data.patch_size, config.train.batch_size, data.patches_per_epoch,
                            config.noise, config.seed, data.augment)

    def fit_data(self, splits: Splits, config: cfg.DenoisingConfig) -> FitData:
        from deepsuite.pipelines.image_denoising.patches import fixed_patches, usable

        data = config.data
        val_images, _, _ = usable(splits.val.x, [str(i) for i in range(len(splits.val.x))], data.patch_size)
        validation = fixed_patches(val_images, data.val_patches, data.patch_size, config.noise, config.seed)
        return FitData(self._stream(splits, config), validation_data=validation)

    def evaluate(self, model, splits: Splits, config: cfg.DenoisingConfig) -> Evaluation:
        from deepsuite.pipelines.image_denoising import evaluate as ev

        settings = config.evaluation
        results = ev.evaluate_images(model, splits.test.x, splits.test.y, config.noise, config.seed,
                                     config.data.channels, settings.tile, settings.overlap,
                                     config.model.size_multiple(), settings.baseline, settings.figure_images)
        metrics = ev.mean_metrics(results)
        label = describe(config.noise)
        figures = {}
        if settings.figure_images:
            figures["denoising_examples"] = ev.comparison_figure(
                results, f"{config.model.kind}, {label}: noisy / ours / classical / clean")
        meta = splits.info.metadata
        notes = [f"test: {len(results)} images ({', '.join(splits.test.y)}) with {label}; "
                 f"mean PSNR {metrics['psnr']:.2f} dB (noisy {metrics['noisy_psnr']:.2f} dB"
                 + (f", non-local means {metrics['nl_means_psnr']:.2f} dB)" if "nl_means_psnr" in metrics else ")"),
                 "protocol: noise not clipped (noisy PSNR is the true noise level); outputs clipped to 0..1",
                 f"trained on {len(splits.train.x)} images: {', '.join(meta['train_images'][:20])}"
                 + (" ..." if len(meta["train_images"]) > 20 else "")]
        if meta.get("skipped_small_images"):
            notes.append(f"skipped {len(meta['skipped_small_images'])} training images smaller than the patch")
        return Evaluation(metrics, figures, {"per_image.csv": ev.per_image_csv(results)}, notes)

    def input_example(self, splits: Splits) -> Any:
        multiple = splits.info.metadata["size_multiple"]
        image = splits.test.x[0]
        side = max(multiple, min(64, *image.shape[:2]) // multiple * multiple)
        return np.ascontiguousarray(image[None, :side, :side]).astype(np.float32)

    def search_space(self, hp, config):
        return cfg.search_space(hp, config)

    def denoise(self, model, metadata: Mapping[str, Any], options: Mapping[str, Any]) -> list[dict]:
        from deepsuite.pipelines.image_denoising.inference import denoise_files

        return denoise_files(model, metadata, list(options.get("inputs") or []), options.get("output"),
                             int(options.get("tile") or 256), int(options.get("overlap") or 0))
