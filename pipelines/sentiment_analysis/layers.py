"""The few layers Keras lacks for text, in keras.ops only (they run on TensorFlow, JAX and PyTorch).

Registered as serializable so `model.keras` reloads without `safe_mode=False` (no Lambda layers).
"""
from __future__ import annotations

import keras
from keras import layers, ops

from deepsuite.pipelines.sentiment_analysis.vectorize import HASH_MULTIPLIER

PACKAGE = "deepsuite.sentiment"


class _NaiveBayesWeights(layers.Layer):
    """The NBSVM weights both Naive Bayes layers share: r * (s * w + p), r fixed (`set_ratios`), w learned from 0."""

    def __init__(self, size: int, weight_scale: float = 1.0, prior: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.size, self.weight_scale, self.prior = int(size), float(weight_scale), float(prior)

    def build(self, input_shape):
        self.ratios = self.add_weight(shape=(self.size,), initializer="zeros", trainable=False, name="nb_ratios")
        self.weights_per_gram = self.add_weight(shape=(self.size,), initializer="zeros", name="gram_weights")
        self.bias = self.add_weight(shape=(1,), initializer="zeros", name="bias")

    def set_ratios(self, ratios) -> None:
        self.ratios.assign(ops.convert_to_tensor(ratios, dtype=self.ratios.dtype))

    def get_config(self):
        return {**super().get_config(), "size": self.size, "weight_scale": self.weight_scale, "prior": self.prior}

    def nb_weights(self):
        return self.ratios * (self.weights_per_gram * self.weight_scale + self.prior)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1)


@keras.saving.register_keras_serializable(PACKAGE)
class NaiveBayesNGrams(_NaiveBayesWeights):
    """An NBSVM-style linear branch: logit = sum over the text's n-grams of r[g] * (s * w[g] + p) + b.

    Token ids (batch, L) -> unigram ids plus hashed bi/tri-gram ids (HASH_MULTIPLIER, as in vectorize.py)
    -> the fixed Naive Bayes log-count ratio r (set from the training set by `set_ratios`) times
    (weight_scale * w + prior), w learned and initialised to 0 -> summed -> (batch, 1): logistic regression on
    NB-scaled n-gram counts, i.e. NBSVM (Wang & Manning 2012) with a logistic loss. Padding and [UNK] have
    r = 0. `prior` > 0 starts the branch at the (scaled) Naive Bayes classifier itself and weight decay pulls
    w back towards it, like NBSVM's interpolation with the NB weights; `weight_scale` multiplies the step of
    w under Adam, i.e. gives the branch its own learning rate when a network shares the optimizer; `binary`
    counts each distinct n-gram of a text once. Bag-of-n-gram models are what reaches NBSVM-level accuracy
    on short reviews without pretrained embeddings; adding this logit to a network's lets each cover the other.
    """

    def __init__(self, vocab_size: int, max_n: int, buckets: int, weight_scale: float = 1.0, prior: float = 0.0,
                 binary: bool = False, **kwargs):
        super().__init__(vocab_size + max(0, max_n - 1) * buckets, weight_scale, prior, **kwargs)
        self.vocab_size, self.max_n, self.buckets, self.binary = vocab_size, max_n, buckets, bool(binary)

    def features(self, ids):
        ids = ops.cast(ids, "int32")
        length = ops.shape(ids)[1]
        grams = [ids]
        for n in range(2, self.max_n + 1):
            parts = [ids[:, i: length - n + 1 + i] for i in range(n)]
            h = parts[0] % (self.buckets - 1)
            valid = ops.cast(parts[0] > 0, "int32")
            for part in parts[1:]:
                h = ((h * HASH_MULTIPLIER) % (self.buckets - 1) + part) % (self.buckets - 1)
                valid = valid * ops.cast(part > 0, "int32")
            offset = self.vocab_size + (n - 2) * self.buckets
            grams.append((h + 1 + offset) * valid)
        return ops.concatenate(grams, axis=1)

    def call(self, ids):
        features = self.features(ids)
        if self.binary:  # each distinct n-gram of a text counts once: zero the repeats after sorting
            features = ops.sort(features, axis=1)
            repeat = ops.concatenate([ops.zeros_like(features[:, :1]), ops.cast(
                features[:, 1:] == features[:, :-1], features.dtype)], axis=1)
            features = features * (1 - repeat)
        scores = ops.take(self.nb_weights(), features, axis=0)  # (batch, grams); id 0 (padding) has ratio 0
        return ops.sum(scores, axis=1, keepdims=True) + self.bias

    def get_config(self):
        config = {k: v for k, v in super().get_config().items() if k != "size"}
        return {**config, "vocab_size": self.vocab_size, "max_n": self.max_n, "buckets": self.buckets,
                "weight_scale": self.weight_scale, "prior": self.prior, "binary": self.binary}


@keras.saving.register_keras_serializable(PACKAGE)
class PositionEmbedding(layers.Layer):
    """Adds a learned embedding of each position; keeps the incoming padding mask."""

    def __init__(self, sequence_length: int, **kwargs):
        super().__init__(**kwargs)
        self.sequence_length = sequence_length
        self.supports_masking = True

    def build(self, input_shape):
        self.positions = self.add_weight(shape=(self.sequence_length, input_shape[-1]),
                                         initializer=keras.initializers.RandomNormal(stddev=0.02), name="positions")

    def call(self, x):
        return x + ops.cast(self.positions[None, : ops.shape(x)[1]], x.dtype)

    def get_config(self):
        return {**super().get_config(), "sequence_length": self.sequence_length}


@keras.saving.register_keras_serializable(PACKAGE)
class MaskedMeanPool(layers.Layer):
    """Mean over non-padding positions; an all-padding text pools to zeros instead of 0/0 = NaN."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, x, mask=None):
        if mask is None:
            return ops.mean(x, axis=1)
        weights = ops.cast(mask, x.dtype)[..., None]
        return ops.sum(x * weights, axis=1) / ops.maximum(ops.sum(weights, axis=1), 1.0)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])


@keras.saving.register_keras_serializable(PACKAGE)
class NaiveBayesBag(_NaiveBayesWeights):
    """The NBSVM logit over a multi-hot bag (batch, V), e.g. character n-grams: x . (r * (s * w + p)) + b.

    Same parametrisation as `NaiveBayesNGrams` (fixed Naive Bayes log-count ratios r from `set_ratios`, learned
    w from 0, `weight_scale` s, `prior` p), for features that arrive already counted (TextVectorization's
    multi_hot output); id 0 ([UNK]) should get ratio 0.
    """

    def call(self, bag):
        weights = self.nb_weights()
        return ops.matmul(ops.cast(bag, weights.dtype), weights[:, None]) + self.bias
