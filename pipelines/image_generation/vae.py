"""`model.kind=vae`: a variational autoencoder whose decoder is the DCGAN generator's architecture."""
from __future__ import annotations

import keras
from keras import ops

from deepsuite.common.pipeline import Splits
from deepsuite.pipelines.image_generation.fid_metric import PACKAGE, FrechetDistance
from deepsuite.pipelines.image_generation.generative import Generative, _images, _model
from deepsuite.pipelines.image_generation.networks import build_encoder, build_generator


@keras.saving.register_keras_serializable(PACKAGE)
class VAE(Generative):
    """Encoder + decoder (the DCGAN generator's architecture): loss = sum of squared errors / (2 sigma^2) + KL
    (the negative ELBO of a Gaussian decoder with fixed sigma, per image); samples decode z ~ N(0, I)."""

    def __init__(self, encoder, decoder, features=None, latent_dim: int = 64, sigma: float = 0.2, seed: int = 0,
                 sample_epochs: int = 0, sample_count: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.decoder = _model(encoder), _model(decoder)
        self.features = _model(features) if features is not None else None
        if self.features is not None:
            self.features.trainable = False
        self.latent_dim, self.sigma, self.seed = int(latent_dim), float(sigma), int(seed)
        self.seed_generator = keras.random.SeedGenerator(seed, name="latents")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")
        self.kl_tracker = keras.metrics.Mean(name="kl")
        self.fid = FrechetDistance(self.features.output.shape[-1]) if self.features is not None else None
        self._track_epoch_samples(sample_epochs, sample_count, self.seed + 2, tuple(self.decoder.output.shape[1:]))
        self.built = True

    @property
    def sampler(self):
        return self.decoder

    @property
    def metrics(self):
        return [self.loss_tracker, self.reconstruction_tracker, self.kl_tracker,
                *([self.fid] if self.fid is not None else [])]

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim, "sigma": self.sigma, "seed": self.seed,
                **self._sample_config(),
                **{name: keras.saving.serialize_keras_object(getattr(self, name))
                   for name in ("encoder", "decoder", "features") if getattr(self, name) is not None}}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        networks = {name: keras.saving.deserialize_keras_object(config.pop(name), custom_objects=custom_objects)
                    for name in ("encoder", "decoder", "features") if name in config}
        return cls(**networks, **config)

    def _elbo(self, real):
        moments = ops.cast(self.encoder(real, training=True), "float32")
        mean, log_var = moments[:, : self.latent_dim], ops.clip(moments[:, self.latent_dim:], -10.0, 10.0)
        z = mean + ops.exp(0.5 * log_var) * self._latents(ops.shape(real)[0])
        reconstructed = ops.cast(self.decoder(z, training=True), "float32")
        axes = tuple(range(1, len(real.shape)))
        reconstruction = ops.mean(ops.sum(ops.square(ops.cast(real, "float32") - reconstructed), axis=axes)) \
            / (2.0 * self.sigma**2)
        kl = ops.mean(-0.5 * ops.sum(1.0 + log_var - ops.square(mean) - ops.exp(log_var), axis=1))
        return reconstruction + kl, reconstruction, kl

    def _update_train_metrics(self, loss, reconstruction, kl):
        for tracker, value in ((self.loss_tracker, loss), (self.reconstruction_tracker, reconstruction),
                               (self.kl_tracker, kl)):
            tracker.update_state(value)
        return {m.name: m.result() for m in self.metrics if m is not self.fid}

    def train_step(self, *args):
        backend = keras.backend.backend()
        if backend == "tensorflow":
            import tensorflow as tf

            real = _images(args[0])
            with tf.GradientTape() as tape:
                loss, reconstruction, kl = self._elbo(real)
                scaled = self.optimizer.scale_loss(loss)
            grads = tape.gradient(scaled, self.trainable_variables)
            self.optimizer.apply(grads, self.trainable_variables)
            self._mark_trained()
            return self._update_train_metrics(loss, reconstruction, kl)
        if backend != "jax":
            raise NotImplementedError(f"the VAE trains on TensorFlow or JAX, not {backend}")
        import jax

        (trainable, non_trainable, optimizer_values, metric_values), data = args
        real = _images(data)
        with keras.StatelessScope(state_mapping=list(zip(self.optimizer.variables, optimizer_values))):
            scale = self.optimizer.scale_loss(1.0)

        def loss_fn(trainable, non_trainable):
            mapping = [*zip(self.trainable_variables, trainable), *zip(self.non_trainable_variables, non_trainable)]
            with keras.StatelessScope(state_mapping=mapping) as scope:
                loss, reconstruction, kl = self._elbo(real)
                self._mark_trained()
                non_trainable = [scope.get_current_value(v) for v in self.non_trainable_variables]
            return loss * scale, (loss, reconstruction, kl, non_trainable)

        (_, (loss, reconstruction, kl, non_trainable)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            trainable, non_trainable)
        trainable, optimizer_values = self.optimizer.stateless_apply(optimizer_values, grads, trainable)
        with keras.StatelessScope(state_mapping=list(zip(self.metrics_variables, metric_values))) as scope:
            logs = self._update_train_metrics(loss, reconstruction, kl)
            metric_values = [scope.get_current_value(v) for v in self.metrics_variables]
        return logs, (trainable, non_trainable, optimizer_values, metric_values)


def build_vae(config, splits: Splits, features=None) -> VAE:
    model_config = config.model
    shape = tuple(splits.metadata.image_shape)
    encoder = build_encoder(shape, model_config.discriminator_widths, model_config.latent_dim)
    decoder = build_generator(model_config.latent_dim, model_config.generator_widths, shape, model_config.bn_momentum,
                              name="decoder")
    return VAE(encoder, decoder, features, latent_dim=model_config.latent_dim, sigma=model_config.vae_sigma,
               seed=config.seed, sample_epochs=config.train.epochs, sample_count=config.evaluation.grid, name="vae")
