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
