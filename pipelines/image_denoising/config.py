"""Config, presets and search space of the image-denoising pipeline."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from deepsuite.common.config import RunConfig, Section, TrainConfig, recipe_default


class DataConfig(Section):
    source: str = Field("skimage", description="clean training images: skimage | fashion_mnist | folder:<path>")
    test_folder: str | None = Field(
        None, description="folder of clean test images (e.g. Set12); default: scikit-image photographs held out "
                          "from training (camera, coins, moon, page)")
    channels: Literal[1, 3] = Field(1, description="1 = grey model (colour inputs are denoised per channel), 3 = RGB")
    patch_size: int = Field(48, ge=8, le=512, description="square training patch side, pixels")
    patches_per_epoch: int = Field(5600, ge=1, description="random patches drawn per epoch")
    val_fraction: float = Field(0.1, ge=0, lt=0.5, description="share of training images held out for validation")
    val_patches: int = Field(128, ge=1, description="fixed noisy validation patches from the held-out images")
    max_train_images: int | None = Field(None, ge=1, description="use only the first N training images")
    max_test_images: int | None = Field(None, ge=1)
    augment: bool = Field(True, description="random flips and 90-degree turns of training patches")
    sampling: Literal["area", "image"] = Field(
        "image", description="pick training images each equally often (image: one very large photograph does not "
                             "dominate; +0.12..0.20 dB on the validation photos) or in proportion to their area")
    cache_dir: str | None = None


class NoiseConfig(Section):
    kind: Literal["gaussian", "poisson", "salt_pepper"] = "gaussian"
    sigma: float = Field(25.0, gt=0, le=255, description="Gaussian std on the 0..255 scale (evaluation noise)")
    sigma_range: tuple[float, float] | None = Field(
        None, description="train blind: sigma drawn uniformly from [low, high] per patch; evaluation uses sigma")
    peak: float = Field(30.0, gt=0, description="Poisson: photons at white (smaller = noisier)")
    amount: float = Field(0.05, gt=0, lt=1, description="salt-and-pepper: fraction of pixels hit")

    @model_validator(mode="after")
    def _range_is_ordered(self):
        if self.sigma_range is not None:
            low, high = self.sigma_range
            if not 0 < low <= high <= 255:
                raise ValueError(f"noise.sigma_range must satisfy 0 < low <= high <= 255, got {list(self.sigma_range)}")
        return self


class ModelConfig(Section):
    kind: Literal["unet", "dncnn"] = Field("unet", description="unet (default: best PSNR per CPU second) | dncnn")
    width: int | None = Field(None, ge=4, le=512, description="unet: filters at full resolution (default 24); "
                                                              "dncnn: filters per layer (default 64)")
    levels: int = Field(3, ge=1, le=5, description="unet: number of 2x downsamplings")
    blocks: int = Field(2, ge=1, le=4, description="unet: convolutions per level")
    depth: int = Field(12, ge=3, le=30, description="dncnn: convolution layers")
    downscale: Literal[1, 2] = Field(2, description="dncnn: 2 works at half resolution (FFDNet-style, 4x cheaper)")
    batch_norm: bool = Field(False, description="batch normalisation after the inner convolutions")
    loss: Literal["mse", "l1"] = "mse"

    def filters(self) -> int:
        return self.width or (24 if self.kind == "unet" else 64)

    def size_multiple(self) -> int:
        """Image sides must be multiples of this; inference pads to it and crops back."""
        return 2 ** self.levels if self.kind == "unet" else self.downscale


class EvaluationConfig(Section):
    tile: int = Field(512, ge=32, description="tile side used when denoising the full test images")
    overlap: int = Field(32, ge=0, description="tile overlap, pixels")
    baseline: Literal["nl_means", "none"] = Field("nl_means", description="classical denoiser reported beside ours")
    figure_images: int = Field(4, ge=0, le=12, description="test images shown as noisy / denoised / clean")
    self_ensemble: bool = Field(True, description="average the 8 flips/rotations of each test image (8x slower "
                                                  "test; +0.19..0.22 dB on the validation photos)")


class ImageDenoisingConfig(RunConfig):
    data: DataConfig = DataConfig()
    noise: NoiseConfig = NoiseConfig()
    model: ModelConfig = ModelConfig()
    # Adam with a decaying (cosine) learning rate, as DnCNN; no weight decay and no early stop: fresh patches
    # and fresh noise every batch leave nothing to overfit. bfloat16 compute (float32 weights): on a CPU with
    # bfloat16 instructions an epoch costs about three quarters of float32's CPU time, so 25 bfloat16 epochs
    # fit the budget of the former 20 float32 ones, and at equal CPU it scored higher on held-out photographs
    # (pipeline README, Benchmark). Without those instructions the runner says so: set mixed_precision=false.
    train: TrainConfig = TrainConfig(epochs=25, batch_size=32, learning_rate=1e-3, optimizer="adam", weight_decay=0.0,
                                     schedule="cosine", early_stopping_patience=0, clipnorm=1.0, mixed_precision=True)
    evaluation: EvaluationConfig = EvaluationConfig()


PRESETS: dict[str, dict] = {
    "default": {},
    "smoke": {
        "data": {"patch_size": 32, "patches_per_epoch": 128, "val_patches": 16, "max_train_images": 4,
                 "max_test_images": 3},
        "model": {"width": 8, "levels": 2, "blocks": 1, "depth": 4},
        "train": {"epochs": 2, "batch_size": 16, "verbose": 0},
        "evaluation": {"figure_images": 2},
    },
    "full": {
        "data": {"patch_size": 64, "patches_per_epoch": 64000, "val_patches": 512},
        "model": {"width": 64, "levels": 4, "blocks": 2},
        "train": {"mixed_precision": True, "epochs": 60, "batch_size": 128, "warmup_epochs": 1},
    },
}


def search_space(hp, config: ImageDenoisingConfig) -> ImageDenoisingConfig:
    """The tuner's choices applied to `config`; model.py never sees `hp`."""
    values = config.model_dump()
    model = config.model
    kinds, widths, losses, patches = ["dncnn", "unet"], [16, 24, 32, 48, 64], ["mse", "l1"], [40, 48, 64]
    values["model"]["kind"] = hp.Choice("model.kind", kinds, default=recipe_default(model.kind, kinds))
    values["model"]["width"] = hp.Choice("model.width", widths, default=recipe_default(model.filters(), widths))
    values["model"]["depth"] = hp.Int("model.depth", 8, 17, default=recipe_default(model.depth, (8, 17)))
    values["model"]["levels"] = hp.Int("model.levels", 2, 4, default=recipe_default(model.levels, (2, 4)))
    values["model"]["batch_norm"] = hp.Boolean("model.batch_norm", default=model.batch_norm)
    values["model"]["loss"] = hp.Choice("model.loss", losses, default=recipe_default(model.loss, losses))
    values["train"]["learning_rate"] = hp.Float("train.learning_rate", 2e-4, 3e-3, sampling="log",
                                                default=recipe_default(config.train.learning_rate, (2e-4, 3e-3)))
    values["data"]["patch_size"] = hp.Choice("data.patch_size", patches,
                                             default=recipe_default(config.data.patch_size, patches))
    return type(config).model_validate(values)
