"""Batches decoded from image files as training reads them: bounded memory, parallel workers, seeded order.

`ImageFileBatches` is a `keras.utils.PyDataset` (so it runs on every backend, JAX without TensorFlow
included) over `data.image_files.ImageFiles`. `workers` threads decode in parallel (Pillow releases the GIL
while it decodes and resizes): on TensorFlow up to `max_queue_size` batches ahead through tf.data, elsewhere
the files of one batch at a time; memory holds those batches only, whatever the folder's size.

On TensorFlow the same batches also come as a tf.data pipeline (`dataset`, tf_image_batches.py), which
keeps pace with Keras's own folder loader. Which rows a batch holds is `streamed_batches.StreamedBatches`'
(the in-memory arrays' (seed, epoch) order), so the same seed gives a streamed run the batches an in-memory
run of the same files gets. Augmentation lives inside the models that use this (random layers), so batches
are the decoded images as they are.
"""
from __future__ import annotations

from typing import Any


from deepsuite.common.data.image_files import ImageFiles
from deepsuite.common.streamed_batches import StreamedBatches, default_workers, epoch_order  # noqa: F401 (re-exported)


class ImageFileBatches(StreamedBatches):
    """(images, targets) batches of `files`; `shuffle`: the (seed, epoch) order, else the files' order
    (validation, evaluation, prediction: `targets` None gives (images,) batches)."""

    def __init__(self, files: ImageFiles, targets: Any, batch_size: int, seed: int = 0, shuffle: bool = True,
                 workers: int | None = None, max_queue_size: int = 8):
        super().__init__(len(files), batch_size, seed, shuffle, workers, max_queue_size)
        self.files, self.targets = files, targets

    def __getitem__(self, index: int):
        rows = self.rows(index)
        images = self.files[rows].read(threads=self.read_threads)
        return (images,) if self.targets is None else (images, self.targets[rows])


def prediction_input(x: Any, batch_size: int, workers: int | None = None,
                     streamed_batch: int | None = None) -> tuple[Any, dict]:
    """(x, predict() keyword arguments): image files become in-order batches (of `streamed_batch` if given),
    arrays stay as they are."""
    if isinstance(x, ImageFiles):
        batches = ImageFileBatches(x, None, streamed_batch or batch_size, shuffle=False, workers=workers)
        return getattr(batches, "dataset", batches), {}
    return x, {"batch_size": batch_size}
