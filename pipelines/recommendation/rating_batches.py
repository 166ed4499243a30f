"""Batches of streamed ratings rows as training reads them: an `EpochSeeded` PyDataset over memmapped columns.

`RowBatches` gathers each batch's rows from the memmapped split columns (stream_splits.py) and turns their
index columns into the model's inputs for those rows only, so memory holds the batches in flight. Training
order is the in-memory arrays' order: each epoch's permutation is `streamed_batches.epoch_order(seed, epoch)`
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

import numpy as np

from deepsuite.common.streamed_batches import StreamedBatches


class RowBatches(StreamedBatches):
    """(x, y) batches of row-indexable columns (`x` a dict of them, `y` one or None for (x,) batches);
    `shuffle`: the (seed, epoch) order, else the rows' own order (validation, prediction)."""

    def __init__(self, x: dict, y: Any, batch_size: int, seed: int = 0, shuffle: bool = True,
                 workers: int | None = None, max_queue_size: int = 8):
        super().__init__(len(next(iter(x.values()))), batch_size, seed, shuffle, workers, max_queue_size)
        self.x, self.y = x, y

    def __getitem__(self, index: int):
        rows = self.rows(index)
        if not self.shuffle:   # in order: one contiguous read of each memmapped column
            rows = slice(int(rows[0]), int(rows[-1]) + 1)
        x = {name: np.asarray(values[rows]) for name, values in self.x.items()}
        return (x,) if self.y is None else (x, np.asarray(self.y[rows]))


def predict_rows(model, x: dict, batch_size: int, workers: int | None = None) -> np.ndarray:
    """The model's predictions for streamed rows, in order, `batch_size` rows a batch."""
    from deepsuite.common.pipeline import to_numpy

    batches = RowBatches(x, None, batch_size, shuffle=False, workers=workers)
    return to_numpy(model.predict(getattr(batches, "dataset", batches), verbose=0))
