"""The few custom layers the recommenders need, written with keras.ops only (any backend).

- IdLookup: raw integer id -> 1-based vocabulary index (0 = unknown) by binary search, so the exported model
  takes MovieLens ids as they are, also on JAX where keras.layers.IntegerLookup (tf.lookup) is unavailable.
- L2Penalty: per-example L2 on gathered embeddings, added in training only; this is how SGD-trained MF is
  regularised (frequent users/items are pulled to zero more often), and it keeps val_loss a pure MSE.
- RatingRange: (B, 1) -> (B,) ratings, clipped to the rating scale at inference, never in training
  (clipping there would zero the gradients of out-of-range predictions).
- InBatchSoftmax: the two-tower retrieval loss: each (user, item) pair's item is the positive, the other
  items of the batch are its negatives, with the log-frequency (sampling-bias) correction; at inference it
  returns the pair's score only.
"""
from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

PACKAGE = "deepsuite_recommendation"


@keras.saving.register_keras_serializable(package=PACKAGE)
class IdLookup(layers.Layer):
    """int ids -> position + 1 in a sorted vocabulary, 0 for ids not in it."""

    def __init__(self, vocabulary_size: int, vocabulary=None, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary_size = int(vocabulary_size)
        self._initial = None if vocabulary is None else np.asarray(vocabulary, dtype="int32")

    def build(self, input_shape):
        initial = self._initial
        self.vocabulary = self.add_weight(
            name="vocabulary", shape=(self.vocabulary_size,), dtype="int32", trainable=False,
            initializer=(lambda shape, dtype=None: ops.convert_to_tensor(initial, dtype="int32"))
            if initial is not None else "zeros")

    def call(self, ids):
        ids = ops.cast(ids, "int32")
        position = ops.cast(ops.searchsorted(self.vocabulary, ids, side="left"), "int32")
        clipped = ops.minimum(position, self.vocabulary_size - 1)
        found = ops.equal(ops.take(self.vocabulary, clipped), ids)
        return ops.where(found, position + 1, ops.zeros_like(position))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "vocabulary_size": self.vocabulary_size}


@keras.saving.register_keras_serializable(package=PACKAGE)
class L2Penalty(layers.Layer):
    """Identity that adds weight * mean over the batch of ||x||^2 to the training loss."""

    def __init__(self, weight: float, **kwargs):
        super().__init__(**kwargs)
        self.weight = float(weight)

    def call(self, x, training=None):
        if training and self.weight:
            self.add_loss(self.weight * ops.mean(ops.sum(ops.square(ops.cast(x, "float32")), axis=-1)))
        return x

    def get_config(self):
        return {**super().get_config(), "weight": self.weight}


@keras.saving.register_keras_serializable(package=PACKAGE)
class RatingRange(layers.Layer):
    def __init__(self, low: float, high: float, **kwargs):
        super().__init__(**kwargs)
        self.low, self.high = float(low), float(high)

    def call(self, x, training=None):
        x = ops.squeeze(x, axis=-1)
        return x if training else ops.clip(x, self.low, self.high)

    def compute_output_shape(self, input_shape):
        return input_shape[:-1]

    def get_config(self):
        return {**super().get_config(), "low": self.low, "high": self.high}


@keras.saving.register_keras_serializable(package=PACKAGE)
class InBatchSoftmax(layers.Layer):
    """score(user, item) = cos / temperature; in training also the in-batch sampled-softmax loss."""

    def __init__(self, num_items: int, temperature: float, logq_correction: float, log_frequency=None, **kwargs):
        super().__init__(**kwargs)
        self.num_items, self.temperature, self.logq_correction = int(num_items), float(temperature), float(logq_correction)
        self._initial = None if log_frequency is None else np.asarray(log_frequency, dtype="float32")

    def build(self, *shapes):
        initial = self._initial
        self.log_frequency = self.add_weight(
            name="log_frequency", shape=(self.num_items,), trainable=False,
            initializer=(lambda shape, dtype=None: ops.convert_to_tensor(initial, dtype="float32"))
            if initial is not None else "zeros")

    def call(self, user_vectors, item_vectors, item_index, training=None):
        scores = ops.sum(user_vectors * item_vectors, axis=-1) / self.temperature
        if training:
            logits = ops.matmul(user_vectors, ops.transpose(item_vectors)) / self.temperature  # (B, B)
            if self.logq_correction:
                logits = logits - self.logq_correction * ops.take(self.log_frequency, item_index)[None, :]
            # the same item twice in a batch is not a negative of itself
            same = ops.cast(ops.equal(item_index[:, None], item_index[None, :]), logits.dtype)
            logits = logits - 1e9 * (same - ops.eye(ops.shape(item_index)[0], dtype=logits.dtype))
            labels = ops.arange(ops.shape(item_index)[0])
            self.add_loss(ops.mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)))
        return scores

    def compute_output_shape(self, user_shape, *_):
        return user_shape[:-1]

    def get_config(self):
        return {**super().get_config(), "num_items": self.num_items, "temperature": self.temperature,
                "logq_correction": self.logq_correction}
