"""Training batches that are a pure function of (seed, epoch, batch index), so a resumed run sees the
batches the uninterrupted run would have seen.

Keras shuffles arrays (and the batch order of a PyDataset) from random state that lives in the process:
a run resumed at epoch 4 would get epoch 1's order, and its curves would leave the uninterrupted run's.
Here every epoch's order is drawn from `np.random.default_rng([seed, epoch])`, and the epoch is told to
the dataset by `callbacks.EpochFeed` at the start of each epoch (Keras counts epochs from the resumed one).
On TensorFlow, arrays take the tf.data form of the same idea (tf_batches.py; `epoch_seeded_arrays` picks).
"""
from __future__ import annotations

from typing import Any

import keras
import numpy as np


class EpochSeeded(keras.utils.PyDataset):
    """A PyDataset whose batches depend only on its seed, `epoch` and the batch index.

    Subclasses read `self.epoch` in `__getitem__` and must not keep other random state between epochs.
    """

    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)


class ShuffledArrays(EpochSeeded):
    """In-memory arrays (or a dict of them) as batches, reshuffled each epoch by (seed, epoch).

    Replaces fit()'s own shuffling of arrays; the last batch is partial, as fit() makes it. Keras adds
    class weights as sample weights (it does so for every PyDataset that returns (x, y)).
    """

    def __init__(self, x: Any, y: Any, batch_size: int, seed: int):
        super().__init__()
        self.x, self.y, self.batch_size, self.seed = x, y, int(batch_size), int(seed)
        first = next(iter(x.values())) if isinstance(x, dict) else x
        self.size = len(first)
        self._order = (None, None)   # (epoch, permutation), replaced whole: batches may be read from a thread

    def __len__(self) -> int:
        return -(-self.size // self.batch_size)

    def _rows(self, index: int) -> np.ndarray:
        epoch = self.epoch
        cached_epoch, order = self._order
        if cached_epoch != epoch:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.size)
            self._order = (epoch, order)
        return np.sort(order[index * self.batch_size:(index + 1) * self.batch_size])

    def __getitem__(self, index: int):
        rows = self._rows(index)
        x = {k: v[rows] for k, v in self.x.items()} if isinstance(self.x, dict) else self.x[rows]
        return (x,) if self.y is None else (x, self.y[rows])


def epoch_seeded_arrays(x: Any, y: Any, batch_size: int, seed: int):
    """ShuffledArrays, or on TensorFlow its tf.data form (tf_batches.py: no Python call per batch); both have
    `set_epoch`, the TensorFlow one gives fit() its `.dataset`."""
    if keras.backend.backend() == "tensorflow":
        from deepsuite.common.tf_batches import TensorFlowShuffledArrays

        return TensorFlowShuffledArrays(x, y, batch_size, seed)
    return ShuffledArrays(x, y, batch_size, seed)
