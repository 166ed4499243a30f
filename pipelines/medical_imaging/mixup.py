"""Mixup training batches (Zhang et al., 2018) as a Keras PyDataset, for `model.mixup > 0`."""
from __future__ import annotations

import keras
import numpy as np


class MixupBatches(keras.utils.PyDataset):
    """Training batches of mixup (Zhang et al., 2018): each image blended with a shuffled partner,
    x = lam * a + (1 - lam) * b with lam ~ Beta(alpha, alpha), the one-hot labels and the class weights
    blended alike (class weights become sample weights). Pixels stay uint8, as the model expects."""

    def __init__(self, x: np.ndarray, y: np.ndarray, num_classes: int, batch_size: int, alpha: float,
                 class_weight: dict[int, float] | None, seed: int):
        super().__init__()
        self.x, self.y, self.batch_size, self.alpha = x, y, batch_size, alpha
        self.onehot = np.eye(num_classes, dtype="float32")[y]
        weights = np.ones(num_classes, "float32") if class_weight is None else \
            np.array([class_weight[c] for c in range(num_classes)], "float32")
        self.weights = weights[y]
        self.rng = np.random.default_rng(seed)
        self.on_epoch_end()

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch_size)

    def on_epoch_end(self):
        self.order = self.rng.permutation(len(self.y))
        self.partner = self.rng.permutation(len(self.y))
        self.lam = self.rng.beta(self.alpha, self.alpha, len(self.y)).astype("float32")

    def __getitem__(self, index: int):
        rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
        a, b, lam = self.order[rows], self.partner[rows], self.lam[rows]
        shape = (-1,) + (1,) * (self.x.ndim - 1)
        images = lam.reshape(shape) * self.x[a] + (1 - lam.reshape(shape)) * self.x[b]
        labels = lam[:, None] * self.onehot[a] + (1 - lam[:, None]) * self.onehot[b]
        weights = lam * self.weights[a] + (1 - lam) * self.weights[b]
        return np.clip(np.rint(images), 0, 255).astype("uint8"), labels, weights
