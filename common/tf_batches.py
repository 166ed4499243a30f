"""`batches.ShuffledArrays` on the TensorFlow backend: the same (seed, epoch)-keyed reshuffle, inside tf.data.

Keras feeds a PyDataset to TensorFlow through `tf.data.Dataset.from_generator`, one Python call per batch;
for a small model on small batches (a recommender, the test suite's tiny pipeline) that call costs more
than the training step. Here the epoch's order is a stateless shuffle keyed on (seed, epoch), the batches
are gathered in the graph, and the epoch is a variable `callbacks.EpochFeed` sets before Keras creates the
epoch's iterator. The order differs from the NumPy one (another generator), so a run is reproducible per
backend, as it already was. Only the runner imports this module, and only when TensorFlow is the backend.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf


class TensorFlowShuffledArrays:
    """`dataset` is what fit() takes; `set_epoch(e)` picks the order its next iteration yields."""

    def __init__(self, x: Any, y: Any, batch_size: int, seed: int):
        first = next(iter(x.values())) if isinstance(x, dict) else x
        size = len(first)
        self.batches = -(-size // int(batch_size))
        self._epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="deepsuite_data_epoch")
        tensors = tf.nest.map_structure(_tensor, (x,) if y is None else (x, y))
        key = tf.constant(int(seed), tf.int64)
        epoch = self._epoch

        def epoch_order(_):
            order = tf.random.experimental.stateless_shuffle(tf.range(size, dtype=tf.int64),
                                                             seed=tf.stack([key, epoch.read_value()]))
            return tf.data.Dataset.from_tensor_slices(order)

        def gather(rows):
            rows = tf.sort(rows)
            return tf.nest.map_structure(lambda values: tf.gather(values, rows), tensors)

        self.dataset = (tf.data.Dataset.from_tensors(0).flat_map(epoch_order).batch(int(batch_size)).map(gather)
                        .apply(tf.data.experimental.assert_cardinality(self.batches)).prefetch(tf.data.AUTOTUNE))

    def set_epoch(self, epoch: int) -> None:
        self._epoch.assign(int(epoch))


def _tensor(values):
    values = np.asarray(values)
    return tf.constant(values.astype(str) if values.dtype.kind in "OU" else values)
