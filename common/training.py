"""Optimizer and learning-rate schedule from `TrainConfig`, shared by every pipeline's build_model."""
from __future__ import annotations

import math

import keras

from deepsuite.common.config import TrainConfig


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    return max(1, math.ceil(num_examples / batch_size))


def learning_rate(train: TrainConfig, steps: int):
    """Constant, or cosine decay to ~0 over all epochs with an optional linear warm-up."""
    if train.schedule == "constant":
        return train.learning_rate
    total = steps * train.epochs
    warmup = int(round(train.warmup_epochs * steps))
    if warmup:
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=train.learning_rate * 0.01, decay_steps=max(1, total - warmup), alpha=0.01,
            warmup_target=train.learning_rate, warmup_steps=warmup)
    return keras.optimizers.schedules.CosineDecay(train.learning_rate, decay_steps=max(1, total), alpha=0.01)


def optimizer(train: TrainConfig, steps: int) -> keras.optimizers.Optimizer:
    lr = learning_rate(train, steps)
    clip = {"clipnorm": train.clipnorm} if train.clipnorm else {}
    if train.ema_momentum:  # Keras swaps the averaged weights in at the end of fit()
        clip |= {"use_ema": True, "ema_momentum": train.ema_momentum}
    if train.optimizer == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=train.weight_decay, **clip)
    if train.optimizer == "adam":
        return keras.optimizers.Adam(lr, **clip)
    return keras.optimizers.SGD(lr, momentum=0.9, nesterov=True, weight_decay=train.weight_decay or None, **clip)


def jit_on_jax(model: keras.Model) -> keras.Model:
    """Let a model with Keras's affine image augmentation compile with XLA on JAX; call it before compile().

    Keras marks RandomTranslation, RandomRotation and RandomZoom as not jit-compatible on every backend
    (TensorFlow's projective-transform op has no XLA kernel), so `jit_compile="auto"` runs the whole model op
    by op: on JAX that gives up XLA's fusion on a GPU and cannot run in several processes at all. On JAX they
    trace and compile (their transform is jax.scipy's map_coordinates); other backends are left as they are.
    """
    if keras.backend.backend() != "jax":
        return model
    affine = (keras.layers.RandomTranslation, keras.layers.RandomRotation, keras.layers.RandomZoom)
    for layer in model._flatten_layers():
        if isinstance(layer, affine):
            layer.supports_jit = True
    return model
