"""`image_batches.ImageFileBatches` on the TensorFlow backend: the same batches, through tf.data.

Keras feeds a PyDataset to TensorFlow through `tf.data.Dataset.from_generator` (one synchronous Python call
per step, its own queue and threads beside TensorFlow's); measured against `image_dataset_from_directory`
on two busy cores that cost about a fifth of the images/second (bench/streaming.py). Here batch indices
go through a parallel, order-keeping `map` whose threads call the same `__getitem__` (Pillow releases the
GIL while it decodes and resizes) and the result is prefetched, so decoding overlaps the training step the
way Keras's own loader does. The batch content is `__getitem__`'s, read when the batch is made, so the
(seed, epoch) order `set_epoch` picks holds. Streamed batch sources (`image_batches`, sentiment's text
batches, recommendation's rating rows) import this module, and only on TensorFlow.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf


def tf_batches(source) -> tf.data.Dataset:
    """`source` (a PyDataset of (x,) or (x, y) NumPy batches, where x may be a dict of arrays) as a tf.data
    pipeline of the same batches. Text parts (object arrays of str/bytes, e.g. sentiment's streamed raw
    strings or recommendation's string ids) become tf.string."""
    first = source[0]
    flat = tf.nest.flatten(first)
    specs = [tf.TensorSpec((None, *np.shape(part)[1:]),
                           tf.string if np.asarray(part).dtype.kind in "OSU" else tf.as_dtype(part.dtype))
             for part in flat]

    def load(index):
        return tf.nest.flatten(source[int(index)])

    def fetch(index):
        parts = tf.numpy_function(load, [index], [spec.dtype for spec in specs], stateful=True)
        return tf.nest.pack_sequence_as(first, [tf.ensure_shape(part, spec.shape) for part, spec in zip(parts, specs)])

    parallel = max(1, int(source.workers))
    dataset = tf.data.Dataset.range(len(source)).map(fetch, num_parallel_calls=parallel, deterministic=True)
    # as many decoded batches ahead as the PyDataset's queue holds: a busy machine's bursts are absorbed
    ahead = max(parallel, int(source.max_queue_size))
    return dataset.apply(tf.data.experimental.assert_cardinality(len(source))).prefetch(ahead)
