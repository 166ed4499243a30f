"""A small modern CNN that takes raw uint8 images: rescale and augmentation live inside the model.

    uint8 (H, W, C) -> Rescaling -> [flip, shift] -> stages of (Conv-BN-ReLU) x blocks, max-pool between
    -> flatten (or global average pool) -> [Dense-BN-ReLU] -> Dropout -> softmax over classes

`build_model` compiles it with the run's optimizer (deepsuite.common.training) and loss.
"""
from __future__ import annotations

import keras
from keras import layers

from deepsuite.common.pipeline import Splits
from deepsuite.common.training import jit_on_jax, optimizer, steps_per_epoch
from deepsuite.pipelines.image_classification.config import ImageClassificationConfig, ModelConfig


def build_model(config: ImageClassificationConfig, splits: Splits) -> keras.Model:
    """The CNN for the training images' shape and classes, compiled; label smoothing needs one-hot
    targets and the categorical loss (data.fit_data gives them)."""
    model = jit_on_jax(build_cnn(tuple(splits.train.x.shape[1:]), len(splits.metadata.class_names), config.model))
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=config.model.label_smoothing) \
        if config.model.label_smoothing else "sparse_categorical_crossentropy"
    steps = steps_per_epoch(len(splits.train), config.train.batch_size)
    model.compile(optimizer=optimizer(config.train, steps), loss=loss, metrics=["accuracy"])
    return model


def build_cnn(input_shape: tuple[int, int, int], num_classes: int, config: ModelConfig) -> keras.Model:
    inputs = keras.Input(shape=input_shape, dtype="uint8", name="image")
    x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    if config.augment:
        if config.horizontal_flip:
            x = layers.RandomFlip("horizontal", name="random_flip")(x)
        if config.translate > 0:
            x = layers.RandomTranslation(config.translate, config.translate, fill_mode="constant",
                                         name="random_shift")(x)
    blocks = config.blocks_per_stage
    blocks = blocks if isinstance(blocks, list) else [blocks] * len(config.widths)
    for stage, (width, count) in enumerate(zip(config.widths, blocks)):
        for block in range(count):
            x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"conv{stage}_{block}")(x)
            x = layers.BatchNormalization(momentum=config.bn_momentum, name=f"bn{stage}_{block}")(x)
            x = layers.ReLU(name=f"relu{stage}_{block}")(x)
        if stage < len(config.widths) - 1 and min(x.shape[1], x.shape[2]) >= 4:
            x = layers.MaxPooling2D(name=f"pool{stage}")(x)
    x = layers.Flatten(name="flatten")(x) if config.head == "flatten" else layers.GlobalAveragePooling2D(name="gap")(x)
    if config.dense_units:
        x = layers.Dense(config.dense_units, use_bias=False, name="dense")(x)
        x = layers.BatchNormalization(momentum=config.bn_momentum, name="dense_bn")(x)
        x = layers.ReLU(name="dense_relu")(x)
    x = layers.Dropout(config.dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="cnn_classifier")
