"""Labelled images as train/validation/test arrays: Fashion-MNIST (default), Keras/TFDS names or class folders.

Validation is a stratified share of train; the test split is the source's own. A folder or a TFDS dataset
may be streamed (`data.stream`, or automatically when it is large): the splits then hold `ImageFiles` (a
folder's paths decoded per batch, or a TFDS split's rows of a prepared memmap, `tfds_images.MemmapImages`)
instead of arrays, and `fit_data` gives fit() `ImageFileBatches` in the order the arrays would have.
"""
from __future__ import annotations

import numpy as np

from deepsuite.common.data import labeled_images
from deepsuite.common.data.image_files import ImageFiles
from deepsuite.common.pipeline import DatasetInfo, FitData, Split, Splits
from deepsuite.pipelines.image_classification.config import ImageClassificationConfig
from deepsuite.pipelines.image_classification.contract import ImageClassificationMetadata


def load_data(config: ImageClassificationConfig) -> Splits:
    data = config.data
    images = labeled_images.load(data.source, data.image_size, data.channels, data.cache_dir,
                                 data.tfds_data_dir, data.download, stream=data.stream)
    keep, held = labeled_images.stratified_split(images.train_y, data.val_fraction, config.seed)
    if data.max_train_samples:
        keep = keep[: data.max_train_samples]
        held = held[: max(10, int(data.max_train_samples * data.val_fraction))]
    test_x, test_y = images.test_x, images.test_y
    if data.max_test_samples:
        test_x, test_y = test_x[: data.max_test_samples], test_y[: data.max_test_samples]
    info = DatasetInfo(name=images.name, source=images.source, digest=images.digest)
    metadata = ImageClassificationMetadata(class_names=images.class_names,
                                           input_shape=tuple(images.train_x.shape[1:]))
    return Splits(Split(images.train_x[keep], images.train_y[keep]), Split(images.train_x[held], images.train_y[held]),
                  Split(test_x, test_y), info, metadata=metadata)


def fit_data(splits: Splits, config: ImageClassificationConfig) -> FitData:
    """Integer labels, or one-hot targets when label smoothing needs the categorical loss (model.py)."""
    train_y, val_y = splits.train.y, splits.val.y
    if config.model.label_smoothing:
        onehot = np.eye(len(splits.metadata.class_names), dtype="float32")
        train_y, val_y = onehot[train_y], onehot[val_y]
    if isinstance(splits.train.x, ImageFiles):
        from deepsuite.common.image_batches import ImageFileBatches  # a keras PyDataset: Keras loads here

        batch, workers = config.train.batch_size, config.data.stream_workers
        val = ImageFileBatches(splits.val.x, val_y, batch, shuffle=False, workers=workers)
        return FitData(ImageFileBatches(splits.train.x, train_y, batch, config.seed, workers=workers),
                       validation_data=getattr(val, "dataset", val))  # tf.data on TensorFlow
    return FitData(splits.train.x, train_y, validation_data=(splits.val.x, val_y))
