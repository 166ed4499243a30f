"""A DCGAN-style GAN as one Keras model with a custom `train_step` (the suite's sanctioned exception to
"Functional models"), on TensorFlow and on JAX, trained by the runner's one `fit()`.

    generator:     z ~ N(0, I) -> Dense -> BN-ReLU -> (H/4 x W/4) -> [ConvT 4x4/2 - BN - ReLU] x 2 -> Conv 3x3 tanh
    discriminator: image -> [SN(Conv 4x4/2) - LeakyReLU(0.2)] x n -> flatten -> SN(Dense 1)   (a logit)
    ema_generator: the generator's exponential moving average (weights and BN statistics), what samples

One step: the discriminator's non-saturating logistic loss on a real batch and a generated one, its Adam update;
then the generator's loss on fresh latents through the updated discriminator, its Adam update; then the EMA
(momentum warmed up over the first steps: `GAN._ema_rate`).
`loss` (what the suite's NaN stop and resume read) is d_loss + g_loss. Validation (`test_step`) accumulates the
Fréchet distance between EMA samples and the validation images on the frozen FID classifier's features
(`val_fid`, the tuning objective).

Both optimizers are one `GanOptimizers` (model.optimizer), whose variables are the discriminator's Adam's then
the generator's, so Keras's JAX trainer carries both in its state and every checkpoint (`save_weights`, the
runner's per-epoch backup) holds both; the TensorFlow step calls each one's `apply`, the JAX step each one's
`stateless_apply` on its slice. `model.kind=vae` builds `VAE` instead (encoder + the generator's architecture
as decoder, negative ELBO, one Adam); both share `Generative` (sampling, `val_fid` validation). Importing this
module registers the classes `model.keras` needs.

Modules: networks.py (the three networks), gan.py (`GAN`), vae.py (`VAE`), generative.py (what both share:
sampling, validation, the per-epoch sample grid), optimizers.py (`GanOptimizers`), fid_metric.py
(`FrechetDistance`); this module builds and compiles the configured one.
"""
from __future__ import annotations

import keras

from deepsuite.common.pipeline import Splits
from deepsuite.common.training import learning_rate, steps_per_epoch
from deepsuite.pipelines.image_generation.fid_metric import PACKAGE, FrechetDistance  # noqa: F401 (registered)
from deepsuite.pipelines.image_generation.gan import GAN, build_gan, d_loss_fn, g_loss_fn  # noqa: F401
from deepsuite.pipelines.image_generation.generative import Generative
from deepsuite.pipelines.image_generation.networks import (  # noqa: F401
    build_discriminator, build_encoder, build_generator)
from deepsuite.pipelines.image_generation.optimizers import GanOptimizers  # noqa: F401
from deepsuite.pipelines.image_generation.vae import VAE, build_vae  # noqa: F401

__all__ = ["PACKAGE", "FrechetDistance", "GAN", "GanOptimizers", "Generative", "VAE", "build_discriminator",
           "build_encoder", "build_gan", "build_generator", "build_model", "build_vae", "d_loss_fn", "g_loss_fn"]


def build_model(config, splits: Splits, features=None) -> Generative:
    """The GAN (or the VAE), compiled with the two Adams (DCGAN's beta_1 0.5; train.learning_rate for the generator,
    model.discriminator_learning_rate, default the same, for the discriminator)."""
    train, model_config = config.train, config.model
    steps = steps_per_epoch(len(splits.train), train.batch_size)  # train.schedule applies (default constant)
    if model_config.kind == "vae":  # one Adam; Keras wraps it in a LossScaleOptimizer under mixed_float16
        model = build_vae(config, splits, features)
        model.compile(optimizer=keras.optimizers.Adam(learning_rate(train, steps),
                                                      **({"clipnorm": train.clipnorm} if train.clipnorm else {})))
        return model
    model = build_gan(config, splits, features)

    def adam(rate):
        optimizer = keras.optimizers.Adam(rate, beta_1=model_config.beta_1, beta_2=0.999,
                                          **({"clipnorm": train.clipnorm} if train.clipnorm else {}))
        if keras.mixed_precision.global_policy().name == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        return optimizer

    d_rate = model_config.discriminator_learning_rate or train.learning_rate
    d_train = train.model_copy(update={"learning_rate": d_rate})
    model.compile(adam(learning_rate(d_train, steps)), adam(learning_rate(train, steps)))
    return model
