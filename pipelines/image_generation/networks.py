"""The networks: the DCGAN generator (also the VAE's decoder), the spectrally normalised discriminator and the
VAE's encoder, as Functional Keras models (keras.ops only, so they run on TensorFlow and JAX).

    generator:     z ~ N(0, I) -> Dense -> BN-ReLU -> (H/4 x W/4) -> [ConvT 4x4/2 - BN - ReLU] x 2 -> Conv 3x3 tanh
    discriminator: image -> [SN(Conv 4x4/2) - LeakyReLU(0.2)] x n -> flatten -> SN(Dense 1)   (a logit)
    encoder:       image -> [Conv 4x4/2 - LeakyReLU(0.2)] x n -> flatten -> Dense(2 * latent) (mean, log-variance)
"""
from __future__ import annotations

import keras
from keras import layers


def build_generator(latent_dim: int, widths: list[int], image_shape, bn_momentum: float = 0.9,
                    name: str = "generator") -> keras.Model:
    height, width, channels = image_shape
    scale = 2 ** (len(widths) - 1)
    z = keras.Input(shape=(latent_dim,), name="z")
    x = layers.Dense(height // scale * width // scale * widths[0], use_bias=False, name="project")(z)
    x = layers.BatchNormalization(momentum=bn_momentum, name="project_bn")(x)
    x = layers.ReLU(name="project_relu")(x)
    x = layers.Reshape((height // scale, width // scale, widths[0]), name="base")(x)
    for i, filters in enumerate(widths[1:]):
        x = layers.Conv2DTranspose(filters, 4, strides=2, padding="same", use_bias=False, name=f"up{i}")(x)
        x = layers.BatchNormalization(momentum=bn_momentum, name=f"up{i}_bn")(x)
        x = layers.ReLU(name=f"up{i}_relu")(x)
    images = layers.Conv2D(channels, 3, padding="same", activation="tanh", dtype="float32", name="image")(x)
    return keras.Model(z, images, name=name)


def build_discriminator(image_shape, widths: list[int], spectral_norm: bool = True) -> keras.Model:
    def normed(layer, **kwargs):
        # autocast off: the power iteration reads its variables in float32 (in float16 it overflows to NaN);
        # the wrapped layer still computes in the policy's dtype
        return layers.SpectralNormalization(layer, name=f"sn_{layer.name}", autocast=False, **kwargs) \
            if spectral_norm else layer

    images = keras.Input(shape=tuple(image_shape), name="image")
    x = images
    for i, filters in enumerate(widths):
        x = normed(layers.Conv2D(filters, 4, strides=2, padding="same", name=f"conv{i}"))(x)
        x = layers.LeakyReLU(0.2, name=f"lrelu{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    logits = normed(layers.Dense(1, dtype="float32", name="logit"))(x)
    logits = layers.Activation("linear", dtype="float32", name="logit_float32")(logits)  # float32 under any policy
    return keras.Model(images, logits, name="discriminator")


def build_encoder(image_shape, widths: list[int], latent_dim: int) -> keras.Model:
    """image -> [Conv 4x4/2 - LeakyReLU] x n -> flatten -> Dense(2 * latent): the posterior's mean and log-variance."""
    images = keras.Input(shape=tuple(image_shape), name="image")
    x = images
    for i, filters in enumerate(widths):
        x = layers.Conv2D(filters, 4, strides=2, padding="same", name=f"conv{i}")(x)
        x = layers.LeakyReLU(0.2, name=f"lrelu{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    moments = layers.Dense(2 * latent_dim, dtype="float32", name="moments")(x)
    return keras.Model(images, moments, name="encoder")
