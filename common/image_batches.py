"""Batches decoded from image files as training reads them: bounded memory, parallel workers, seeded order.

`ImageFileBatches` is a `keras.utils.PyDataset` (so it runs on every backend, JAX without TensorFlow
included) over `data.image_files.ImageFiles`. `workers` threads decode in parallel (Pillow releases the GIL
while it decodes and resizes): on TensorFlow up to `max_queue_size` batches ahead through tf.data, elsewhere
the files of one batch at a time; memory holds those batches only, whatever the folder's size.

On TensorFlow the same batches also come as a tf.data pipeline (`dataset`, tf_image_batches.py), which
keeps pace with Keras's own folder loader. Training order is the arrays' (`batches.ShuffledArrays`, or on TensorFlow `tf_batches`): each epoch is a
permutation drawn from (seed, epoch), rows sorted within a batch, told by `callbacks.EpochFeed` through
`set_epoch`. So the same seed gives a streamed run the batches an in-memory run of the same files gets, and
an exactly resumed run those of the uninterrupted one. Augmentation lives inside the models that use this
(random layers), so batches are the decoded images as they are.
"""
from __future__ import annotations

import os
from typing import Any

import keras
import numpy as np

from deepsuite.common.batches import EpochSeeded
from deepsuite.common.data.image_files import ImageFiles


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


class ImageFileBatches(EpochSeeded):
    """(images, targets) batches of `files`; `shuffle`: the (seed, epoch) order, else the files' order
    (validation, evaluation, prediction: `targets` None gives (images,) batches)."""

    def __init__(self, files: ImageFiles, targets: Any, batch_size: int, seed: int = 0, shuffle: bool = True,
                 workers: int | None = None, max_queue_size: int = 8):
        workers = default_workers() if workers is None else int(workers)
        # On TensorFlow fit() and predict() get `dataset`, whose map runs `workers` batches at once. Elsewhere
        # Keras's own thread pool would be the parallel part, but it prefetches across `set_epoch` (the JAX
        # trainer starts it on a peeked batch and keeps what it had queued), so epoch 0 would begin with
        # batches of another order: there the pool stays off and each batch decodes on `workers` threads.
        self.decode_threads = 1 if keras.backend.backend() == "tensorflow" else workers
        super().__init__(workers=workers if keras.backend.backend() == "tensorflow" else 1,
                         use_multiprocessing=False, max_queue_size=max_queue_size)
        self.files, self.targets = files, targets
        self.batch_size, self.seed, self.shuffle = int(batch_size), int(seed), shuffle
        self._order = (None, None)   # (epoch, permutation), replaced whole: workers read it from threads
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
        return -(-len(self.files) // self.batch_size)

    def rows(self, index: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(index * self.batch_size, min((index + 1) * self.batch_size, len(self.files)))
        epoch = self.epoch
        cached_epoch, order = self._order
        if cached_epoch != epoch:
            order = epoch_order(self.seed, epoch, len(self.files))
            self._order = (epoch, order)
        return np.sort(order[index * self.batch_size:(index + 1) * self.batch_size])

    def __getitem__(self, index: int):
        if index < 0 or index >= len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        rows = self.rows(index)
        images = self.files[rows].read(threads=self.decode_threads)
        return (images,) if self.targets is None else (images, self.targets[rows])


def epoch_order(seed: int, epoch: int, size: int) -> np.ndarray:
    """The permutation the in-memory arrays use for this (seed, epoch) on this backend."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        order = tf.random.experimental.stateless_shuffle(tf.range(size, dtype=tf.int64),
                                                         seed=tf.constant([seed, epoch], tf.int64))
        return order.numpy()
    return np.random.default_rng([seed, epoch]).permutation(size)


def prediction_input(x: Any, batch_size: int, workers: int | None = None,
                     streamed_batch: int | None = None) -> tuple[Any, dict]:
    """(x, predict() keyword arguments): image files become in-order batches (of `streamed_batch` if given),
    arrays stay as they are."""
    if isinstance(x, ImageFiles):
        batches = ImageFileBatches(x, None, streamed_batch or batch_size, shuffle=False, workers=workers)
        return getattr(batches, "dataset", batches), {}
    return x, {"batch_size": batch_size}
