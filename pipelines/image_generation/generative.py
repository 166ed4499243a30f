"""What the GAN and the VAE share (`Generative`): sampling through `call`/`predict`, the `val_fid` validation
step on both backends, the latent sampler's seed state as a model variable, and the per-epoch sample grid."""
from __future__ import annotations

import keras
import numpy as np
from keras import ops


class Generative(keras.Model):
    """What the GAN and the VAE share: `call(z)` and `predict(z)` sample `sampler` (the EMA generator, the
    decoder) without training; validation (`test_step`) accumulates the Fréchet distance between samples and the
    validation images on the frozen FID features (`val_fid`); the latent sampler's seed state is a model variable,
    so the runner's backup carries it.

    Sample grid per epoch (`_track_epoch_samples`): a fixed batch of latents (from the run's seed) and, written by
    the first validation pass after each epoch's training, the sampler's images of them in row `epoch - 1` of
    `epoch_samples`, all non-trainable model variables: the per-epoch backup and `model.keras` carry them, so a
    resumed run keeps the rows of the epochs before the kill. `sample_fresh` (set by every train step, cleared by
    validation) advances `sample_passes`, the number of epochs whose row is written."""

    sampler: keras.Model
    sample_epochs: int = 0
    sample_count: int = 0

    def _track_epoch_samples(self, epochs: int, count: int, seed: int, image_shape) -> None:
        self.sample_epochs, self.sample_count = int(epochs), int(count)
        if not (self.sample_epochs and self.sample_count):
            return
        zeros = keras.initializers.Zeros()
        self.sample_latents = self.add_weight(shape=(count, self.latent_dim), initializer=zeros, trainable=False,
                                              name="sample_latents", dtype="float32")
        self.sample_latents.assign(np.random.default_rng(seed).standard_normal((count, self.latent_dim))
                                   .astype(np.float32))
        self.epoch_samples = self.add_weight(shape=(epochs, count, *image_shape), initializer=zeros,
                                             trainable=False, name="epoch_samples", dtype="float32")
        self.sample_passes = self.add_weight(shape=(), initializer=zeros, trainable=False, name="sample_passes",
                                             dtype="float32")
        self.sample_fresh = self.add_weight(shape=(), initializer=zeros, trainable=False, name="sample_fresh",
                                            dtype="float32")

    def _mark_trained(self) -> None:
        """Called by every train step (inside its StatelessScope on JAX): the next validation pass opens a row."""
        if self.sample_epochs:
            self.sample_fresh.assign(ops.ones((), "float32"))

    def _write_epoch_samples(self) -> None:
        if not self.sample_epochs:
            return
        passes = self.sample_passes + self.sample_fresh
        self.sample_passes.assign(passes)
        self.sample_fresh.assign(ops.zeros((), "float32"))
        row = ops.cast(ops.clip(passes - 1.0, 0.0, self.sample_epochs - 1.0), "int32")
        mask = ops.reshape(ops.one_hot(row, self.sample_epochs, dtype="float32"), (self.sample_epochs, 1, 1, 1, 1))
        images = ops.cast(self.sampler(self.sample_latents, training=False), "float32")
        self.epoch_samples.assign(self.epoch_samples * (1.0 - mask) + images[None] * mask)

    def epoch_sample_rows(self) -> np.ndarray:
        """(epochs written, count, H, W, C) images in [-1, 1]: row e is the fixed latents' images after epoch e+1."""
        if not self.sample_epochs:
            return np.zeros((0,), np.float32)
        rows = int(round(float(ops.convert_to_numpy(self.sample_passes.value))))
        return np.asarray(ops.convert_to_numpy(self.epoch_samples.value))[: min(rows, self.sample_epochs)]

    def _sample_config(self) -> dict:
        return {"sample_epochs": self.sample_epochs, "sample_count": self.sample_count}

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
        self._write_epoch_samples()
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


def _images(data):
    """x of an (x,), (x, y) or (x, y, w) batch, or x itself."""
    return data[0] if isinstance(data, (tuple, list)) else data


def _model(value):
    return value if isinstance(value, keras.Model) else keras.saving.deserialize_keras_object(value)
