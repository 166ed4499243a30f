"""The keras-io "Simple MNIST convnet" recipe (fchollet, keras.io/examples/vision/mnist_convnet), run on our
Fashion-MNIST split: the image-classification bench's peer.

As published: inputs scaled to 0..1, Conv(32, 3) - MaxPool(2) - Conv(64, 3) - MaxPool(2) - Flatten -
Dropout(0.5) - Dense(softmax), Adam, categorical cross-entropy, batch 128, 15 epochs. The recipe's own
`validation_split=0.1` is replaced by our validation split (same role, and the same training images as ours).
"""
from __future__ import annotations

import time

import numpy as np


def convnet_accuracy(train_x, train_y, val_x, val_y, test_x, test_y, classes: int, seed: int,
                     epochs: int = 15) -> tuple[float, float]:
    """(test accuracy, training seconds)."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    scale = lambda x: np.asarray(x, dtype="float32") / 255.0  # noqa: E731
    model = keras.Sequential([
        keras.Input(shape=np.asarray(train_x).shape[1:]),
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(classes, activation="softmax"),
    ])
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    onehot = lambda y: keras.utils.to_categorical(np.asarray(y), classes)  # noqa: E731
    started = time.perf_counter()
    model.fit(scale(train_x), onehot(train_y), batch_size=128, epochs=epochs,
              validation_data=(scale(val_x), onehot(val_y)), verbose=0)
    seconds = time.perf_counter() - started
    _, accuracy = model.evaluate(scale(test_x), onehot(test_y), batch_size=512, verbose=0)
    return float(accuracy), seconds
