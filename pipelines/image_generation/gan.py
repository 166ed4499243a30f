"""The DCGAN: generator + spectral-norm discriminator + EMA generator as one Keras model with a custom
`train_step` (the suite's sanctioned exception to "Functional models"), on TensorFlow and on JAX.

One step: the discriminator's non-saturating logistic loss on a real batch and a generated one, its Adam update;
then the generator's loss on fresh latents through the updated discriminator, its Adam update; then the EMA
(momentum warmed up over the first steps: `GAN._ema_rate`). `loss` (what the suite's NaN stop and resume read)
is d_loss + g_loss.
"""
from __future__ import annotations

import keras
from keras import ops

from deepsuite.common.pipeline import Splits
from deepsuite.pipelines.image_generation.fid_metric import PACKAGE, FrechetDistance
from deepsuite.pipelines.image_generation.generative import Generative, _images, _model
from deepsuite.pipelines.image_generation.networks import build_discriminator, build_generator
from deepsuite.pipelines.image_generation.optimizers import GanOptimizers


def d_loss_fn(real_logits, fake_logits):
    """Non-saturating logistic loss of the discriminator: -log D(x) - log(1 - D(G(z)))."""
    real_logits, fake_logits = ops.cast(real_logits, "float32"), ops.cast(fake_logits, "float32")
    return ops.mean(ops.softplus(-real_logits)) + ops.mean(ops.softplus(fake_logits))


def g_loss_fn(fake_logits):
    """Non-saturating generator loss: -log D(G(z))."""
    return ops.mean(ops.softplus(-ops.cast(fake_logits, "float32")))


@keras.saving.register_keras_serializable(PACKAGE)
class GAN(Generative):
    """Generator + discriminator + EMA generator (+ the frozen FID features for validation); `call(z)` samples
    the EMA generator, so `model.predict(z)` and `model(z)` are what `generate` uses."""

    def __init__(self, generator, discriminator, ema_generator=None, features=None, latent_dim: int = 64,
                 ema_momentum: float = 0.999, seed: int = 0, sample_epochs: int = 0, sample_count: int = 0,
                 **kwargs):
        super().__init__(**kwargs)
        self.generator = _model(generator)
        self.discriminator = _model(discriminator)
        self.ema_generator = _model(ema_generator) if ema_generator is not None else \
            keras.models.clone_model(self.generator)
        self.ema_generator.trainable = False
        self.features = _model(features) if features is not None else None
        if self.features is not None:
            self.features.trainable = False
        self.latent_dim, self.ema_momentum, self.seed = int(latent_dim), float(ema_momentum), int(seed)
        self.seed_generator = keras.random.SeedGenerator(seed, name="latents")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.real_score = keras.metrics.Mean(name="d_real")  # mean D(x) probability on real images
        self.fake_score = keras.metrics.Mean(name="d_fake")
        self.fid = FrechetDistance(self.features.output.shape[-1]) if self.features is not None else None
        self._ema_pairs = _pairs(self.ema_generator, self.generator)
        self._track_epoch_samples(sample_epochs, sample_count, self.seed + 2,
                                  tuple(self.ema_generator.output.shape[1:]))
        self.built = True

    # -- Keras plumbing ------------------------------------------------------------------------------
    @property
    def sampler(self):
        return self.ema_generator

    @property
    def metrics(self):
        return [self.loss_tracker, self.d_loss_tracker, self.g_loss_tracker, self.real_score, self.fake_score,
                *([self.fid] if self.fid is not None else [])]

    def compile(self, d_optimizer, g_optimizer, **kwargs):
        optimizer = GanOptimizers(d_optimizer, g_optimizer)
        optimizer.partition = self._partition
        super().compile(optimizer=optimizer, auto_scale_loss=False, **kwargs)

    def _partition(self, variables):
        d_ids = {id(v) for v in self.discriminator.trainable_variables}
        g_ids = {id(v) for v in self.generator.trainable_variables}
        return [v for v in variables if id(v) in d_ids], [v for v in variables if id(v) in g_ids]

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim, "ema_momentum": self.ema_momentum,
                "seed": self.seed, **self._sample_config(),
                **{name: keras.saving.serialize_keras_object(getattr(self, name))
                   for name in ("generator", "discriminator", "ema_generator", "features")
                   if getattr(self, name) is not None}}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        networks = {name: keras.saving.deserialize_keras_object(config.pop(name), custom_objects=custom_objects)
                    for name in ("generator", "discriminator", "ema_generator", "features") if name in config}
        return cls(**networks, **config)

    # -- one step ------------------------------------------------------------------------------------
    def train_step(self, *args):
        if keras.backend.backend() == "jax":
            return self._jax_train_step(*args)
        if keras.backend.backend() == "tensorflow":
            return self._tf_train_step(*args)
        raise NotImplementedError(f"the GAN trains on TensorFlow or JAX, not {keras.backend.backend()}")

    def _tf_train_step(self, data):
        import tensorflow as tf

        real = _images(data)
        batch = ops.shape(real)[0]
        d_opt, g_opt = self.optimizer.discriminator, self.optimizer.generator
        fake = self.generator(self._latents(batch), training=True)
        with tf.GradientTape() as tape:
            real_logits = self.discriminator(real, training=True)
            fake_logits = self.discriminator(fake, training=True)
            d_loss = d_loss_fn(real_logits, fake_logits)
            scaled = d_opt.scale_loss(d_loss)
        d_vars = self.discriminator.trainable_variables
        d_opt.apply(tape.gradient(scaled, d_vars), d_vars)
        with tf.GradientTape() as tape:
            g_logits = self.discriminator(self.generator(self._latents(batch), training=True), training=True)
            g_loss = g_loss_fn(g_logits)
            scaled = g_opt.scale_loss(g_loss)
        g_vars = self.generator.trainable_variables
        g_opt.apply(tape.gradient(scaled, g_vars), g_vars)
        momentum = self._ema_rate(g_opt.iterations)
        for ema, current in self._ema_pairs:
            ema.assign(momentum * ema + (1.0 - momentum) * ops.cast(current, ema.dtype))
        self._mark_trained()
        return self._update_train_metrics(d_loss, g_loss, real_logits, fake_logits)

    def _ema_rate(self, steps):
        """model.ema_momentum, warmed up as min(m, (1 + t) / (10 + t)) over the generator's steps t, so a short
        run's EMA follows the generator instead of staying near its random initialisation (0.999^500 = 0.61)."""
        t = ops.cast(steps, "float32")
        return ops.minimum(self.ema_momentum, (1.0 + t) / (10.0 + t))

    def _jax_train_step(self, state, data):
        import jax

        trainable, non_trainable, optimizer_values, metric_values = state
        real = _images(data)
        batch = real.shape[0]
        values = {id(v): value for v, value in zip(self.trainable_variables, trainable)}
        values |= {id(v): value for v, value in zip(self.non_trainable_variables, non_trainable)}
        own, d_opt_values, g_opt_values = self.optimizer.slices(optimizer_values)
        d_opt, g_opt = self.optimizer.discriminator, self.optimizer.generator

        def part(model, which):
            return [values[id(v)] for v in getattr(model, which)]

        def store(model, which, new):
            values.update({id(v): value for v, value in zip(getattr(model, which), new)})

        seed_state = self.seed_generator.state
        with keras.StatelessScope(state_mapping=[(seed_state, values[id(seed_state)])]) as scope:
            z_d, z_g = self._latents(batch), self._latents(batch)
            values[id(seed_state)] = scope.get_current_value(seed_state)
        with keras.StatelessScope(state_mapping=list(zip(self.optimizer.variables, optimizer_values))):
            d_scale, g_scale = d_opt.scale_loss(1.0), g_opt.scale_loss(1.0)  # loss scaling (mixed_float16)

        G, D = self.generator, self.discriminator
        fake, new = G.stateless_call(part(G, "trainable_variables"), part(G, "non_trainable_variables"), z_d,
                                     training=True)
        store(G, "non_trainable_variables", new)
        fake = jax.lax.stop_gradient(fake)

        def discriminator_loss(d_trainable, d_non_trainable):
            real_logits, d_non_trainable = D.stateless_call(d_trainable, d_non_trainable, real, training=True)
            fake_logits, d_non_trainable = D.stateless_call(d_trainable, d_non_trainable, fake, training=True)
            loss = d_loss_fn(real_logits, fake_logits)
            return loss * d_scale, (loss, d_non_trainable, real_logits, fake_logits)

        d_trainable = part(D, "trainable_variables")
        (_, (d_loss, d_non_trainable, real_logits, fake_logits)), grads = jax.value_and_grad(
            discriminator_loss, has_aux=True)(d_trainable, part(D, "non_trainable_variables"))
        d_trainable, d_opt_values = d_opt.stateless_apply(d_opt_values, grads, d_trainable)
        store(D, "trainable_variables", d_trainable)
        store(D, "non_trainable_variables", d_non_trainable)

        def generator_loss(g_trainable, g_non_trainable):
            images, g_non_trainable = G.stateless_call(g_trainable, g_non_trainable, z_g, training=True)
            logits, d_non_trainable = D.stateless_call(part(D, "trainable_variables"),
                                                       part(D, "non_trainable_variables"), images, training=True)
            loss = g_loss_fn(logits)
            return loss * g_scale, (loss, g_non_trainable, d_non_trainable)

        g_trainable = part(G, "trainable_variables")
        (_, (g_loss, g_non_trainable, d_non_trainable)), grads = jax.value_and_grad(
            generator_loss, has_aux=True)(g_trainable, part(G, "non_trainable_variables"))
        g_trainable, g_opt_values = g_opt.stateless_apply(g_opt_values, grads, g_trainable)
        store(G, "trainable_variables", g_trainable)
        store(G, "non_trainable_variables", g_non_trainable)
        store(D, "non_trainable_variables", d_non_trainable)
        with keras.StatelessScope(state_mapping=list(zip(g_opt.variables, g_opt_values))):
            momentum = self._ema_rate(g_opt.iterations.value)
        for ema, current in self._ema_pairs:
            values[id(ema)] = (momentum * values[id(ema)]
                               + (1.0 - momentum) * values[id(current)].astype(values[id(ema)].dtype))
        if self.sample_epochs:  # the next validation pass opens a row of the per-epoch sample grid
            values[id(self.sample_fresh)] = ops.ones((), "float32")

        with keras.StatelessScope(state_mapping=list(zip(self.metrics_variables, metric_values))) as scope:
            logs = self._update_train_metrics(d_loss, g_loss, real_logits, fake_logits)
            metric_values = [scope.get_current_value(v) for v in self.metrics_variables]
        state = ([values[id(v)] for v in self.trainable_variables],
                 [values[id(v)] for v in self.non_trainable_variables],
                 [*own, *d_opt_values, *g_opt_values], metric_values)
        return logs, state

    def _update_train_metrics(self, d_loss, g_loss, real_logits, fake_logits):
        self.loss_tracker.update_state(d_loss + g_loss)
        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        self.real_score.update_state(ops.sigmoid(ops.cast(real_logits, "float32")))
        self.fake_score.update_state(ops.sigmoid(ops.cast(fake_logits, "float32")))
        return {m.name: m.result() for m in self.metrics if m is not self.fid}


def _pairs(ema_model, model):
    """(EMA variable, variable) for every weight of `model` (BN statistics included), matched by layer and name."""
    pairs = []
    for ema_layer, layer in zip(ema_model.layers, model.layers):
        by_name = {v.name: v for v in layer.weights}
        for variable in ema_layer.weights:
            pairs.append((variable, by_name[variable.name]))
    return pairs


def build_gan(config, splits: Splits, features=None) -> GAN:
    model_config = config.model
    shape = tuple(splits.metadata.image_shape)
    generator = build_generator(model_config.latent_dim, model_config.generator_widths, shape, model_config.bn_momentum)
    ema = build_generator(model_config.latent_dim, model_config.generator_widths, shape, model_config.bn_momentum,
                          name="ema_generator")
    ema.set_weights(generator.get_weights())
    discriminator = build_discriminator(shape, model_config.discriminator_widths, model_config.spectral_norm)
    return GAN(generator, discriminator, ema, features, latent_dim=model_config.latent_dim,
               ema_momentum=model_config.ema_momentum, seed=config.seed, sample_epochs=config.train.epochs,
               sample_count=config.evaluation.grid, name="dcgan")
