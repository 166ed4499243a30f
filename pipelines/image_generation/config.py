"""Config, presets and search space of the image-generation pipeline."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from deepsuite.common.config import RunConfig, Section, TrainConfig, recipe_default


class DataConfig(Section):
    source: str = Field("fashion_mnist", description="fashion_mnist | keras:<name> | tfds:<name> | folder:<path>")
    val_fraction: float = Field(0.1, gt=0, lt=0.5, description="share of train held out for validation (its FID "
                                                               "is the per-epoch figure and the tuning objective)")
    max_train_samples: int | None = Field(None, ge=10, description="subsample train (smoke tests, quick looks)")
    max_val_samples: int | None = Field(None, ge=10)
    max_test_samples: int | None = Field(None, ge=10)
    image_size: tuple[int, int] | None = Field(None, description="resize to (height, width), each divisible by 4 "
                                                                 "(the generator doubles its size twice)")
    channels: Literal[1, 3] | None = Field(None, description="force grey (1) or RGB (3); default: as stored")
    cache_dir: str | None = None
    tfds_data_dir: str | None = None
    download: bool = True


class ModelConfig(Section):
    kind: Literal["dcgan", "vae"] = Field("dcgan", description="dcgan: the GAN; vae: a variational autoencoder "
                                                                 "(encoder: discriminator_widths; decoder: the "
                                                                 "generator's architecture)")
    latent_dim: int = Field(96, ge=8, le=512, description="size of the generator's Gaussian input")
    generator_widths: list[int] = Field([128, 64, 32], min_length=2, max_length=4,
                                        description="filters at the base (H/2^(n-1)) and after each 2x upsampling")
    discriminator_widths: list[int] = Field([32, 64, 128], min_length=1, max_length=4,
                                            description="filters of each stride-2 convolution")
    spectral_norm: bool = Field(True, description="spectral normalisation of every discriminator weight "
                                                  "(the stabiliser; see README)")
    ema_momentum: float = Field(0.999, ge=0, lt=1, description="EMA of the generator's weights, used for sampling "
                                                               "and every figure; 0 samples the raw generator")
    discriminator_learning_rate: float | None = Field(None, gt=0, description="default: train.learning_rate "
                                                                              "(the generator's)")
    beta_1: float = Field(0.5, ge=0, lt=1, description="Adam's first-moment decay for both networks (DCGAN: 0.5)")
    bn_momentum: float = Field(0.9, gt=0, lt=1)
    vae_sigma: float = Field(0.2, gt=0, le=2, description="vae: the decoder's fixed Gaussian sigma (on [-1, 1] "
                                                          "pixels): smaller weighs reconstruction over the KL term")

    @model_validator(mode="after")
    def _positive_widths(self):
        if any(w < 1 for w in self.generator_widths + self.discriminator_widths):
            raise ValueError("model widths must be positive")
        return self


class EvaluationConfig(Section):
    samples: int = Field(10000, ge=50, description="generated images compared with as many test images "
                                                   "(FID, KID); capped by the test split's size")
    feature_train_samples: int | None = Field(None, ge=100, description="train+val images the FID classifier "
                                                                        "learns from (default: all)")
    feature_epochs: int = Field(3, ge=1, le=50, description="epochs of the FID classifier (trained once, cached)")
    feature_dim: int = Field(128, ge=16, le=1024, description="width of the classifier's penultimate layer: "
                                                               "the features FID and KID are computed on")
    kid_subset: int = Field(1000, ge=10, description="KID subset size (averaged over subsets)")
    grid: int = Field(8, ge=2, le=16, description="the sample grid figure is grid x grid images")


class ImageGenerationConfig(RunConfig):
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    train: TrainConfig = TrainConfig(epochs=15, batch_size=64, learning_rate=2e-4, optimizer="adam",
                                     weight_decay=0.0, schedule="constant", early_stopping_patience=0)


PRESETS: dict[str, dict] = {
    "default": {},
    "smoke": {
        "data": {"max_train_samples": 384, "max_val_samples": 128, "max_test_samples": 256},
        "model": {"latent_dim": 32, "generator_widths": [32, 16, 8], "discriminator_widths": [8, 16],
                  "ema_momentum": 0.9},
        "evaluation": {"samples": 256, "feature_train_samples": 1536, "feature_epochs": 2, "feature_dim": 32,
                       "kid_subset": 100, "grid": 4},
        "train": {"epochs": 2, "batch_size": 64, "learning_rate": 1e-3, "verbose": 0},
    },
    "full": {
        "model": {"latent_dim": 128, "generator_widths": [256, 128, 64], "discriminator_widths": [64, 128, 256]},
        "evaluation": {"feature_epochs": 5, "feature_dim": 256},
        "train": {"mixed_precision": True, "epochs": 60, "batch_size": 128},
    },
}


def search_space(hp, config: ImageGenerationConfig) -> ImageGenerationConfig:
    """The tuner's choices applied to `config` (objective: `val_fid`, the Fréchet distance between EMA samples and
    the validation images on the FID classifier's features, lower is better); every default is the recipe's."""
    values = config.model_dump()
    model, train = config.model, config.train
    latents = [32, 64, 96, 128]
    values["model"]["latent_dim"] = hp.Choice("model.latent_dim", latents,
                                              default=recipe_default(model.latent_dim, latents))
    scales = [0.5, 1.0, 2.0]
    scale = hp.Choice("model.width_scale", scales, default=1.0)
    values["model"]["generator_widths"] = [max(4, int(w * scale)) for w in model.generator_widths]
    values["model"]["discriminator_widths"] = [max(4, int(w * scale)) for w in model.discriminator_widths]
    values["train"]["learning_rate"] = hp.Float("train.learning_rate", 1e-4, 2e-3, sampling="log",
                                                default=recipe_default(train.learning_rate, (1e-4, 2e-3)))
    ratios = [1.0, 2.0, 4.0]
    ratio = hp.Choice("model.discriminator_lr_ratio", ratios, default=1.0)  # TTUR: D faster than G
    values["model"]["discriminator_learning_rate"] = values["train"]["learning_rate"] * ratio
    momenta = [0.0, 0.9, 0.99, 0.999]
    values["model"]["ema_momentum"] = hp.Choice("model.ema_momentum", momenta,
                                                default=recipe_default(model.ema_momentum, momenta))
    return type(config).model_validate(values)
