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
"""
from __future__ import annotations

import keras
from keras import layers, ops

from deepsuite.common.pipeline import Splits
from deepsuite.common.training import learning_rate, steps_per_epoch

PACKAGE = "deepsuite_image_generation"


# ---------------------------------------------------------------------------------------------------------
# The two networks

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


# ---------------------------------------------------------------------------------------------------------
# Metrics

@keras.saving.register_keras_serializable(PACKAGE)
class FrechetDistance(keras.metrics.Metric):
    """The Fréchet distance between two streams of feature vectors (real, generated), accumulated batch by batch:
    sums and sums of outer products, float32; Tr((C_r C_g)^(1/2)) from the eigenvalues of C_r^(1/2) C_g C_r^(1/2)."""

    def __init__(self, dim: int, name: str = "fid", **kwargs):
        super().__init__(name=name, **kwargs)
        self.dim = dim
        zeros = keras.initializers.Zeros()
        self.count = self.add_variable(shape=(), initializer=zeros, name="count")
        self.sums = [self.add_variable(shape=(dim,), initializer=zeros, name=f"sum_{s}") for s in "rg"]
        self.outers = [self.add_variable(shape=(dim, dim), initializer=zeros, name=f"outer_{s}") for s in "rg"]

    def update_state(self, real, generated):
        for features, total, outer in zip((real, generated), self.sums, self.outers):
            features = ops.cast(features, "float32")
            total.assign(total + ops.sum(features, axis=0))
            outer.assign(outer + ops.matmul(ops.transpose(features), features))
        self.count.assign(self.count + ops.cast(ops.shape(real)[0], "float32"))

    def result(self):
        n = ops.maximum(self.count, 2.0)
        means = [total / n for total in self.sums]
        covs = [(outer - n * ops.outer(mean, mean)) / (n - 1.0) for outer, mean in zip(self.outers, means)]
        values, vectors = ops.eigh(covs[0])
        root = ops.matmul(vectors * ops.sqrt(ops.maximum(values, 0.0))[None, :], ops.transpose(vectors))
        inner = ops.eigh(ops.matmul(ops.matmul(root, covs[1]), root))[0]
        trace_root = ops.sum(ops.sqrt(ops.maximum(inner, 0.0)))
        return (ops.sum(ops.square(means[0] - means[1])) + ops.trace(covs[0]) + ops.trace(covs[1])
                - 2.0 * trace_root)

    def reset_state(self):
        for variable in self.variables:
            variable.assign(ops.zeros(variable.shape, variable.dtype))

    def get_config(self):
        return {**super().get_config(), "dim": self.dim}


# ---------------------------------------------------------------------------------------------------------
# The two optimizers as one

@keras.saving.register_keras_serializable(PACKAGE)
class GanOptimizers(keras.optimizers.Optimizer):
    """The discriminator's and the generator's optimizers as the model's one `optimizer`: its variables are theirs
    (discriminator's first), so fit()'s state on JAX and every weights file carry both. `partition` (set by
    `GAN.compile`) splits a model's trainable variables into (discriminator's, generator's)."""

    def __init__(self, discriminator, generator, name: str = "gan_optimizers", **kwargs):
        super().__init__(learning_rate=0.0, name=name)
        self.discriminator = keras.optimizers.get(discriminator)
        self.generator = keras.optimizers.get(generator)
        self.partition = None

    def build(self, var_list):
        d_vars, g_vars = self.partition(var_list)
        self.discriminator.build(d_vars)
        self.generator.build(g_vars)
        super().build(var_list)

    @property
    def variables(self):
        return self._variables + self.discriminator.variables + self.generator.variables

    def slices(self, optimizer_variables):
        """(own, discriminator's, generator's) parts of a list in `variables`' order."""
        own, d = len(self._variables), len(self.discriminator.variables)
        values = list(optimizer_variables)
        return values[:own], values[own:own + d], values[own + d:]

    @property
    def iterations(self):
        return self.generator.iterations

    @property
    def learning_rate(self):
        return self.generator.learning_rate

    @learning_rate.setter
    def learning_rate(self, value):  # the base class sets 0.0 in __init__, before the inner optimizers exist
        if "generator" in self.__dict__:
            self.generator.learning_rate = value

    def apply(self, grads, trainable_variables=None):
        raise NotImplementedError("GanOptimizers applies through its discriminator and generator optimizers")

    def finalize_variable_values(self, var_list):
        pass

    def get_config(self):
        return {"name": self.name, "discriminator": keras.saving.serialize_keras_object(self.discriminator),
                "generator": keras.saving.serialize_keras_object(self.generator)}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        return cls(keras.saving.deserialize_keras_object(config.pop("discriminator"), custom_objects=custom_objects),
                   keras.saving.deserialize_keras_object(config.pop("generator"), custom_objects=custom_objects),
                   **config)


# ---------------------------------------------------------------------------------------------------------
# The GAN

def d_loss_fn(real_logits, fake_logits):
    """Non-saturating logistic loss of the discriminator: -log D(x) - log(1 - D(G(z)))."""
    real_logits, fake_logits = ops.cast(real_logits, "float32"), ops.cast(fake_logits, "float32")
    return ops.mean(ops.softplus(-real_logits)) + ops.mean(ops.softplus(fake_logits))


def g_loss_fn(fake_logits):
    """Non-saturating generator loss: -log D(G(z))."""
    return ops.mean(ops.softplus(-ops.cast(fake_logits, "float32")))


class Generative(keras.Model):
    """What the GAN and the VAE share: `call(z)` and `predict(z)` sample `sampler` (the EMA generator, the
    decoder) without training; validation (`test_step`) accumulates the Fréchet distance between samples and the
    validation images on the frozen FID features (`val_fid`); the latent sampler's seed state is a model variable,
    so the runner's backup carries it."""

    sampler: keras.Model

    def call(self, z, training=False):
        return self.sampler(z, training=False)

    def build(self, input_shape=None):
        self.built = True

    def _latents(self, batch):
        return keras.random.normal((batch, self.latent_dim), seed=self.seed_generator)

    def test_step(self, *args):
        if keras.backend.backend() != "jax":
            return self._validate(_images(args[0]))
        state, data = args
        trainable, non_trainable, metric_values = state
        mapping = [*zip(self.trainable_variables, trainable), *zip(self.non_trainable_variables, non_trainable),
                   *zip(self.metrics_variables, metric_values)]
        with keras.StatelessScope(state_mapping=mapping) as scope:
            logs = self._validate(_images(data))
            non_trainable = [scope.get_current_value(v) for v in self.non_trainable_variables]
            metric_values = [scope.get_current_value(v) for v in self.metrics_variables]
        return logs, (trainable, non_trainable, metric_values)

    def _validate(self, real):
        if self.fid is None:
            return {}
        fake = self.sampler(self._latents(ops.shape(real)[0]), training=False)
        self.fid.update_state(self.features(real, training=False), self.features(fake, training=False))
        return {"fid": self.fid.result()}

    def predict_step(self, *args):
        if keras.backend.backend() != "jax":
            return self.sampler(_images(args[0]), training=False)
        state, data = args
        trainable, non_trainable = state
        mapping = [*zip(self.trainable_variables, trainable), *zip(self.non_trainable_variables, non_trainable)]
        with keras.StatelessScope(state_mapping=mapping):
            return self.sampler(_images(data), training=False), non_trainable



@keras.saving.register_keras_serializable(PACKAGE)
class GAN(Generative):
    """Generator + discriminator + EMA generator (+ the frozen FID features for validation); `call(z)` samples
    the EMA generator, so `model.predict(z)` and `model(z)` are what `generate` uses."""

    def __init__(self, generator, discriminator, ema_generator=None, features=None, latent_dim: int = 64,
                 ema_momentum: float = 0.999, seed: int = 0, **kwargs):
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
                "seed": self.seed,
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

# ---------------------------------------------------------------------------------------------------------
# The VAE (model.kind=vae)

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


@keras.saving.register_keras_serializable(PACKAGE)
class VAE(Generative):
    """Encoder + decoder (the DCGAN generator's architecture): loss = sum of squared errors / (2 sigma^2) + KL
    (the negative ELBO of a Gaussian decoder with fixed sigma, per image); samples decode z ~ N(0, I)."""

    def __init__(self, encoder, decoder, features=None, latent_dim: int = 64, sigma: float = 0.2, seed: int = 0,
                 **kwargs):
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
                non_trainable = [scope.get_current_value(v) for v in self.non_trainable_variables]
            return loss * scale, (loss, reconstruction, kl, non_trainable)

        (_, (loss, reconstruction, kl, non_trainable)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            trainable, non_trainable)
        trainable, optimizer_values = self.optimizer.stateless_apply(optimizer_values, grads, trainable)
        with keras.StatelessScope(state_mapping=list(zip(self.metrics_variables, metric_values))) as scope:
            logs = self._update_train_metrics(loss, reconstruction, kl)
            metric_values = [scope.get_current_value(v) for v in self.metrics_variables]
        return logs, (trainable, non_trainable, optimizer_values, metric_values)


def _images(data):
    """x of an (x,), (x, y) or (x, y, w) batch, or x itself."""
    return data[0] if isinstance(data, (tuple, list)) else data


def _model(value):
    return value if isinstance(value, keras.Model) else keras.saving.deserialize_keras_object(value)


def _pairs(ema_model, model):
    """(EMA variable, variable) for every weight of `model` (BN statistics included), matched by layer and name."""
    pairs = []
    for ema_layer, layer in zip(ema_model.layers, model.layers):
        by_name = {v.name: v for v in layer.weights}
        for variable in ema_layer.weights:
            pairs.append((variable, by_name[variable.name]))
    return pairs


# ---------------------------------------------------------------------------------------------------------
# The pipeline's builder

def build_gan(config, splits: Splits, features=None) -> GAN:
    model_config = config.model
    shape = tuple(splits.metadata.image_shape)
    generator = build_generator(model_config.latent_dim, model_config.generator_widths, shape, model_config.bn_momentum)
    ema = build_generator(model_config.latent_dim, model_config.generator_widths, shape, model_config.bn_momentum,
                          name="ema_generator")
    ema.set_weights(generator.get_weights())
    discriminator = build_discriminator(shape, model_config.discriminator_widths, model_config.spectral_norm)
    return GAN(generator, discriminator, ema, features, latent_dim=model_config.latent_dim,
               ema_momentum=model_config.ema_momentum, seed=config.seed, name="dcgan")


def build_vae(config, splits: Splits, features=None) -> VAE:
    model_config = config.model
    shape = tuple(splits.metadata.image_shape)
    encoder = build_encoder(shape, model_config.discriminator_widths, model_config.latent_dim)
    decoder = build_generator(model_config.latent_dim, model_config.generator_widths, shape, model_config.bn_momentum,
                              name="decoder")
    return VAE(encoder, decoder, features, latent_dim=model_config.latent_dim, sigma=model_config.vae_sigma,
               seed=config.seed, name="vae")


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
