"""Batches of streamed ratings rows as training reads them: an `EpochSeeded` PyDataset over memmapped columns.

`RowBatches` gathers each batch's rows from the memmapped split columns (stream_splits.py) and turns their
index columns into the model's inputs for those rows only, so memory holds the batches in flight. Training
order is the in-memory arrays' order: each epoch's permutation is `image_batches.epoch_order(seed, epoch)`
(NumPy's `default_rng([seed, epoch])`, or on TensorFlow the stateless tf shuffle `tf_batches` uses), rows sorted
within a batch, the epoch told by `callbacks.EpochFeed` through `set_epoch`. So a streamed run trains on the
batches an in-memory run of the same file gets, and reaches the same metrics.

On TensorFlow `dataset` gives the same batches as a tf.data pipeline (batch indices through an order-keeping
parallel map, prefetched), which is what fit() and predict() get; elsewhere (JAX without TensorFlow) the
PyDataset itself, read on one thread, since Keras's worker pool would prefetch across `set_epoch`.

Memory: the epoch's permutation (8 bytes a row, as the in-memory path draws it too) and the batches in flight.
"""
from __future__ import annotations

from typing import Any

import keras
import numpy as np

from deepsuite.common.batches import EpochSeeded
from deepsuite.common.image_batches import default_workers, epoch_order


class RowBatches(EpochSeeded):
    """(x, y) batches of row-indexable columns (`x` a dict of them, `y` one or None for (x,) batches);
    `shuffle`: the (seed, epoch) order, else the rows' own order (validation, prediction)."""

    def __init__(self, x: dict, y: Any, batch_size: int, seed: int = 0, shuffle: bool = True,
                 workers: int | None = None, max_queue_size: int = 8):
        tensorflow = keras.backend.backend() == "tensorflow"
        workers = default_workers() if workers is None else int(workers)
        super().__init__(workers=workers if tensorflow else 1, use_multiprocessing=False,
                         max_queue_size=max_queue_size)
        self.x, self.y = x, y
        self.size = len(next(iter(x.values())))
        self.batch_size, self.seed, self.shuffle = int(batch_size), int(seed), shuffle
        self._order = (None, None)   # (epoch, permutation), replaced whole: tf.data reads batches from threads
        self._dataset = None

    def __len__(self) -> int:
        return -(-self.size // self.batch_size)

    def rows(self, index: int):
        if not self.shuffle:
            return slice(index * self.batch_size, min((index + 1) * self.batch_size, self.size))
        epoch = self.epoch
        cached_epoch, order = self._order
        if cached_epoch != epoch:
            order = epoch_order(self.seed, epoch, self.size)
            self._order = (epoch, order)
        return np.sort(order[index * self.batch_size:(index + 1) * self.batch_size])

    def __getitem__(self, index: int):
        if index < 0 or index >= len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        rows = self.rows(index)
        x = {name: np.asarray(values[rows]) for name, values in self.x.items()}
        return (x,) if self.y is None else (x, np.asarray(self.y[rows]))

    @property
    def dataset(self):
        """On TensorFlow, these batches as a tf.data pipeline; absent elsewhere."""
        if keras.backend.backend() != "tensorflow":
            raise AttributeError("dataset: only on the TensorFlow backend")
        if self._dataset is None:
            from deepsuite.common.tf_image_batches import tf_batches  # TensorFlow only

            self._dataset = tf_batches(self)
        return self._dataset


def predict_rows(model, x: dict, batch_size: int, workers: int | None = None) -> np.ndarray:
    """The model's predictions for streamed rows, in order, `batch_size` rows a batch."""
    from deepsuite.common.pipeline import to_numpy

    batches = RowBatches(x, None, batch_size, shuffle=False, workers=workers)
    return to_numpy(model.predict(getattr(batches, "dataset", batches), verbose=0))
