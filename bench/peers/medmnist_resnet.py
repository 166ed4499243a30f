"""MedMNIST v2's ResNet-18 (28) baseline (Yang et al., Scientific Data 2023; github.com/MedMNIST/experiments,
MedMNIST2D/train_and_eval_pytorch.py and models.py) rewritten in Keras 3 and run on our split: the
medical-imaging bench's peer.

As in MedMNIST's code: images scaled to 0..1 then normalised with mean 0.5 / std 0.5, no augmentation; ResNet-18
for 28 px (kuangliu's CIFAR variant): a 3x3 stride-1 stem convolution of 64 filters (no bias) + BatchNorm + ReLU,
no max-pool, four stages of two BasicBlocks (64, 128, 256, 512 filters; the last three start with stride 2 and a
1x1 stride-2 convolution + BatchNorm shortcut), global average pooling, a linear layer to the class logits;
cross-entropy on the logits; Adam, learning rate 0.001, batch 128 (shuffled), 100 epochs with the learning rate
x0.1 at 50 % and 75 % of the epochs (MultiStepLR milestones [0.5 E, 0.75 E], gamma 0.1); validation AUC after
every epoch, the best epoch's model kept; test AUC (binary: of the softmax probability of the positive class;
multi-class: the mean of the one-vs-rest AUCs, as medmnist.Evaluator computes it) and accuracy (argmax).
PyTorch's conventions are kept where Keras' defaults differ: 3x3 convolutions pad one pixel on every side
(Keras' "same" pads stride-2 convolutions on one side only), BatchNorm momentum 0.1 in PyTorch's sense (0.9 in
Keras') and epsilon 1e-5, Adam epsilon 1e-8, and PyTorch's default initialisation (kaiming-uniform with
a = sqrt 5, i.e. uniform with variance 1 / (3 fan-in), also for the linear layer's bias).

Adapted: our train / validation / test split (the official MedMNIST split, subsampled only by a smoke preset);
`epochs` may be fewer than 100 on a CPU, the milestones then stay at 50 % / 75 % (epoch e, counted from 0, runs
at 0.001 x 0.1^(number of milestones <= e)); `width` narrows the four stages (64 = the recipe) for smoke runs.
MedMNIST's script assigns `best_model = model` (a reference, so it in fact evaluates the last epoch's
weights); this peer keeps a copy of the best validation-AUC epoch's weights, as the paper describes.
Seconds are the training time including the per-epoch validation scoring that the model selection needs.
"""
from __future__ import annotations

import math
import time

import keras
import numpy as np
from keras import layers

LEARNING_RATE, BATCH, EPOCHS, GAMMA, MILESTONES = 1e-3, 128, 100, 0.1, (0.5, 0.75)


def _torch_init(fan_in: int | None = None):
    """PyTorch's default Conv2d/Linear weight init (kaiming_uniform, a=sqrt(5)); with fan_in, its bias init."""
    if fan_in:
        bound = 1 / math.sqrt(fan_in)
        return keras.initializers.RandomUniform(-bound, bound)
    return keras.initializers.VarianceScaling(1 / 3, mode="fan_in", distribution="uniform")


def _conv(x, filters: int, kernel: int, stride: int):
    if kernel == 3:
        x = layers.ZeroPadding2D(1)(x)
    return layers.Conv2D(filters, kernel, strides=stride, padding="valid", use_bias=False,
                         kernel_initializer=_torch_init())(x)


def _bn(x):
    return layers.BatchNormalization(momentum=0.9, epsilon=1e-5)(x)


def _basic_block(x, filters: int, stride: int):
    out = layers.ReLU()(_bn(_conv(x, filters, 3, stride)))
    out = _bn(_conv(out, filters, 3, 1))
    shortcut = x if stride == 1 and x.shape[-1] == filters else _bn(_conv(x, filters, 1, stride))
    return layers.ReLU()(layers.Add()([out, shortcut]))


def build_resnet18_28(input_shape: tuple[int, ...], classes: int, width: int = 64) -> keras.Model:
    inputs = keras.Input(shape=input_shape)
    x = layers.ReLU()(_bn(_conv(inputs, width, 3, 1)))
    for stage, filters in enumerate((width, 2 * width, 4 * width, 8 * width)):
        for block in range(2):
            x = _basic_block(x, filters, 2 if stage and not block else 1)
    x = layers.GlobalAveragePooling2D()(x)
    fan_in = x.shape[-1]
    logits = layers.Dense(classes, kernel_initializer=_torch_init(), bias_initializer=_torch_init(fan_in))(x)
    return keras.Model(inputs, logits, name="medmnist_resnet18_28")


def learning_rate(epoch: int, epochs: int) -> float:
    """MultiStepLR(milestones=[0.5 E, 0.75 E], gamma=0.1) stepped once per epoch; epoch counted from 0."""
    return LEARNING_RATE * GAMMA ** sum(epoch >= m * epochs for m in MILESTONES)


def auc(y: np.ndarray, probabilities: np.ndarray, positive: int | None) -> float:
    from sklearn.metrics import roc_auc_score

    if probabilities.shape[1] == 2:
        return float(roc_auc_score(y == (1 if positive is None else positive),
                                   probabilities[:, 1 if positive is None else positive]))
    return float(np.mean([roc_auc_score(y == c, probabilities[:, c]) for c in range(probabilities.shape[1])]))


def resnet18_figures(train_x, train_y, val_x, val_y, test_x, test_y, classes: int, seed: int,
                     epochs: int = EPOCHS, width: int = 64, positive: int | None = None) -> dict:
    """{"auc", "accuracy" (test), "val_auc", "best_epoch" (1-based), "seconds", "epochs", "width"}."""
    keras.utils.set_random_seed(seed)
    scale = lambda x: (np.asarray(x, dtype="float32") / 255.0 - 0.5) / 0.5  # noqa: E731
    train_x, val_x, test_x = scale(train_x), scale(val_x), scale(test_x)
    train_y, val_y, test_y = (np.asarray(y).reshape(-1).astype("int64") for y in (train_y, val_y, test_y))
    model = build_resnet18_28(train_x.shape[1:], classes, width)
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE, epsilon=1e-8),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    def probabilities(x: np.ndarray) -> np.ndarray:
        # padded to whole batches: one traced predict step for every split
        padded = np.concatenate([x, np.zeros((-len(x) % BATCH, *x.shape[1:]), x.dtype)])
        logits = model.predict(padded, batch_size=BATCH, verbose=0)[: len(x)]
        return keras.ops.convert_to_numpy(keras.ops.softmax(logits, axis=-1))

    best = {"val_auc": -1.0}
    started = time.perf_counter()
    for epoch in range(epochs):
        model.optimizer.learning_rate.assign(learning_rate(epoch, epochs))
        model.fit(train_x, train_y, batch_size=BATCH, epochs=1, shuffle=True, verbose=0)
        val_auc = auc(val_y, probabilities(val_x), positive)
        if val_auc > best["val_auc"]:
            best = {"val_auc": val_auc, "best_epoch": epoch + 1, "weights": model.get_weights()}
    seconds = time.perf_counter() - started
    model.set_weights(best.pop("weights"))
    test_p = probabilities(test_x)
    return {"auc": auc(test_y, test_p, positive), "accuracy": float(np.mean(test_p.argmax(axis=1) == test_y)),
            **best, "seconds": seconds, "epochs": epochs, "width": width}
