"""Labelled images as train/validation/test arrays: Fashion-MNIST (default), Keras/TFDS names or class folders.

Validation is a stratified share of train; the test split is the source's own.
"""
from __future__ import annotations

import numpy as np

from deepsuite.common.data import labeled_images
from deepsuite.common.pipeline import DatasetInfo, FitData, Split, Splits
from deepsuite.pipelines.image_classification.config import ImageClassificationConfig
from deepsuite.pipelines.image_classification.contract import ImageClassificationMetadata


def load_data(config: ImageClassificationConfig) -> Splits:
    data = config.data
    images = labeled_images.load(data.source, data.image_size, data.channels, data.cache_dir,
                                 data.tfds_data_dir, data.download)
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
    if config.model.label_smoothing:
        onehot = np.eye(len(splits.metadata.class_names), dtype="float32")
        return FitData(splits.train.x, onehot[splits.train.y], (splits.val.x, onehot[splits.val.y]))
    return FitData(splits.train.x, splits.train.y, validation_data=(splits.val.x, splits.val.y))
