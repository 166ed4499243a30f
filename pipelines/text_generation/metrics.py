"""Language-model figures: per-epoch perplexity as a Keras metric, exact test figures in NumPy.

Loss is the mean cross-entropy in nats per token; perplexity = exp(loss); bits per token = loss / ln 2
(bits per character for the char tokenizer, the figure char-RNN papers quote).
"""
from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops


class Perplexity(keras.metrics.Metric):
    """exp(mean next-token cross-entropy) over an epoch, from logits; logged as `perplexity` / `val_perplexity`.

    Used only while training: `evaluation.evaluate` recompiles the model without it, so the exported
    model.keras holds built-in Keras objects only and loads without this package.
    """

    def __init__(self, name: str = "perplexity", **kwargs):
        super().__init__(name=name, **kwargs)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total", dtype="float32")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count", dtype="float32")

    def update_state(self, y_true, y_pred, sample_weight=None):
        nats = ops.sparse_categorical_crossentropy(y_true, ops.cast(y_pred, "float32"), from_logits=True)
        self.total.assign_add(ops.sum(nats))
        self.count.assign_add(ops.cast(ops.size(nats), "float32"))

    def result(self):
        return ops.exp(self.total / ops.maximum(self.count, 1.0))

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)


class Accumulator:
    """Exact mean loss and top-1 accuracy over batches of (targets, logits), in float64."""

    def __init__(self):
        self.nats = 0.0
        self.correct = 0
        self.tokens = 0

    def add(self, targets: np.ndarray, logits: np.ndarray) -> None:
        logits = np.asarray(logits, dtype=np.float64)
        shifted = logits - logits.max(axis=-1, keepdims=True)
        log_norm = np.log(np.exp(shifted).sum(axis=-1))
        picked = np.take_along_axis(shifted, targets[..., None].astype(np.int64), axis=-1)[..., 0]
        self.nats += float((log_norm - picked).sum())
        self.correct += int((logits.argmax(axis=-1) == targets).sum())
        self.tokens += int(targets.size)

    def metrics(self) -> dict[str, float]:
        loss = self.nats / max(self.tokens, 1)
        return {"loss": loss, "perplexity": math.exp(loss), "bits_per_token": loss / math.log(2),
                "accuracy": self.correct / max(self.tokens, 1), "tokens": float(self.tokens)}
