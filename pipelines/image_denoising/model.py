"""Two fully convolutional denoisers; both predict the noise and subtract it (residual learning).

Inputs are float32 images on the 0..1 scale of any size (None x None x C): Gaussian noise is not
clipped, so the input is not uint8. Sides must be multiples of `ModelConfig.size_multiple()`;
`tiling.denoise_array` pads to that and crops back.

unet (Ronneberger et al. 2015, additive skips; the default: best PSNR per CPU second in our runs):
    noisy -> blocks at width -> [strided conv down, blocks at 2x width] x levels
    -> [transposed conv up + skip, blocks] x levels -> Conv3x3 = noise;  denoised = noisy - noise

dncnn (Zhang et al. 2017), optionally FFDNet-style at half resolution (Zhang et al. 2018):
    noisy (H, W, C) -> Conv s2 (H/2, W/2, width) -> [Conv3x3 -(BN)- ReLU] x (depth-2)
    -> ConvTranspose s2 (H, W, C) = noise estimate;  denoised = noisy - noise
  downscale=2 does the same work on a quarter of the pixels.
"""
from __future__ import annotations

import keras
from keras import layers

from deepsuite.common.pipeline import Splits
from deepsuite.common.training import optimizer
from deepsuite.pipelines.image_denoising.config import ImageDenoisingConfig, ModelConfig
from deepsuite.pipelines.image_denoising.data import patch_stream

MAX_UNET_WIDTH = 512


def build(config: ImageDenoisingConfig, splits: Splits) -> keras.Model:
    """The compiled denoiser: MSE (or L1) between its output and the clean patch."""
    model = build_denoiser(config.data.channels, config.model)
    steps = len(patch_stream(splits, config))
    model.compile(optimizer=optimizer(config.train, steps), loss="mae" if config.model.loss == "l1" else "mse")
    return model


def build_denoiser(channels: int, config: ModelConfig) -> keras.Model:
    inputs = keras.Input(shape=(None, None, channels), dtype="float32", name="noisy")
    if config.kind == "unet":
        noise = _unet_noise(inputs, channels, config)
    else:
        noise = _dncnn_noise(inputs, channels, config)
    denoised = layers.Subtract(dtype="float32", name="denoised")([inputs, noise])
    return keras.Model(inputs, denoised, name=f"{config.kind}_denoiser")


def _conv_bn_relu(x, width: int, batch_norm: bool, name: str):
    x = layers.Conv2D(width, 3, padding="same", use_bias=not batch_norm, name=f"{name}_conv")(x)
    if batch_norm:
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _dncnn_noise(inputs, channels: int, config: ModelConfig):
    if config.downscale == 2:
        x = layers.Conv2D(config.filters(), 4, strides=2, padding="same", activation="relu", name="head_down")(inputs)
    else:
        x = layers.Conv2D(config.filters(), 3, padding="same", activation="relu", name="head")(inputs)
    for i in range(config.depth - 2):
        x = _conv_bn_relu(x, config.filters(), config.batch_norm, f"body{i}")
    if config.downscale == 2:
        return layers.Conv2DTranspose(channels, 4, strides=2, padding="same", dtype="float32", name="noise_up")(x)
    return layers.Conv2D(channels, 3, padding="same", dtype="float32", name="noise")(x)


def _block(x, width: int, config: ModelConfig, name: str):
    for b in range(config.blocks):
        x = _conv_bn_relu(x, width, config.batch_norm, f"{name}_{b}")
    return x


def _unet_noise(inputs, channels: int, config: ModelConfig):
    widths = [min(config.filters() * 2 ** level, MAX_UNET_WIDTH) for level in range(config.levels + 1)]
    x = _block(inputs, widths[0], config, "enc0")
    skips = []
    for level in range(1, config.levels + 1):
        skips.append(x)
        x = layers.Conv2D(widths[level], 2, strides=2, name=f"down{level}")(x)
        x = _block(x, widths[level], config, f"enc{level}")
    for level in range(config.levels, 0, -1):
        x = layers.Conv2DTranspose(widths[level - 1], 2, strides=2, name=f"up{level}")(x)
        x = layers.Add(name=f"skip{level}")([x, skips[level - 1]])
        x = _block(x, widths[level - 1], config, f"dec{level - 1}")
    return layers.Conv2D(channels, 3, padding="same", dtype="float32", name="noise")(x)
