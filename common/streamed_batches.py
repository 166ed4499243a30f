"""What every streamed batch source shares: rows in the in-memory arrays' (seed, epoch) order, workers, and
the tf.data form on TensorFlow.

Image files (image_batches.py), sentiment's texts on disk and recommendation's memmapped rating rows differ
only in how a batch's rows are read; which rows a batch holds, how many batches there are and how TensorFlow
is fed are the same, so they live here once. Each epoch's order is `epoch_order(seed, epoch, size)` — the
permutation the in-memory arrays get on this backend (`batches.ShuffledArrays`, or on TensorFlow
`tf_batches`) — with rows sorted within a batch, so a streamed run trains on the batches an in-memory run of
the same data gets, and an exactly resumed run on those of the uninterrupted one.
"""
from __future__ import annotations

import keras
import numpy as np

from deepsuite.common.batches import EpochSeeded
from deepsuite.common.workers import default_workers


def epoch_order(seed: int, epoch: int, size: int) -> np.ndarray:
    """The permutation the in-memory arrays use for this (seed, epoch) on this backend."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        order = tf.random.experimental.stateless_shuffle(tf.range(size, dtype=tf.int64),
                                                         seed=tf.constant([seed, epoch], tf.int64))
        return order.numpy()
    return np.random.default_rng([seed, epoch]).permutation(size)


class StreamedBatches(EpochSeeded):
    """Batches of `size` rows read by a subclass's `__getitem__` (which calls `rows(index)`); `shuffle`: the
    (seed, epoch) order, else the rows' own order (validation, evaluation, prediction).

    On TensorFlow fit() and predict() get `dataset`, whose order-keeping map reads `workers` batches at once.
    Elsewhere Keras's own thread pool would be the parallel part, but it prefetches across `set_epoch` (the JAX
    trainer starts it on a peeked batch and keeps what it had queued), so epoch 0 would begin with batches of
    another order: there the pool stays off (`workers` = 1) and `read_threads` says how many threads a
    subclass may use inside one batch instead."""

    def __init__(self, size: int, batch_size: int, seed: int = 0, shuffle: bool = True,
                 workers: int | None = None, max_queue_size: int = 8):
        workers = default_workers() if workers is None else int(workers)
        tensorflow = keras.backend.backend() == "tensorflow"
        self.read_threads = 1 if tensorflow else workers
        super().__init__(workers=workers if tensorflow else 1, use_multiprocessing=False,
                         max_queue_size=max_queue_size)
        self.size, self.batch_size, self.seed, self.shuffle = int(size), int(batch_size), int(seed), shuffle
        self._order = (None, None)   # (epoch, permutation), replaced whole: tf.data's threads read it
        self._dataset = None

    @property
    def dataset(self):
        """On TensorFlow, these batches as a tf.data pipeline (tf_image_batches.py), which fit() and predict()
        are given instead of the PyDataset (`runner.fit_model` takes a feed's `.dataset`); absent elsewhere."""
        if keras.backend.backend() != "tensorflow":
            raise AttributeError("dataset: only on the TensorFlow backend")
        if self._dataset is None:
            from deepsuite.common.tf_image_batches import tf_batches

            self._dataset = tf_batches(self)
        return self._dataset

    def __len__(self) -> int:
        return -(-self.size // self.batch_size)

    def rows(self, index: int) -> np.ndarray:
        """The row numbers of batch `index` (IndexError outside 0..len-1)."""
        if index < 0 or index >= len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        if not self.shuffle:
            return np.arange(index * self.batch_size, min((index + 1) * self.batch_size, self.size))
        epoch = self.epoch
        cached_epoch, order = self._order
        if cached_epoch != epoch:
            order = epoch_order(self.seed, epoch, self.size)
            self._order = (epoch, order)
        return np.sort(order[index * self.batch_size:(index + 1) * self.batch_size])
