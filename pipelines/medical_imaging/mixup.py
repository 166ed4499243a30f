"""Mixup training batches (Zhang et al., 2018) as a Keras PyDataset, for `model.mixup > 0`."""
from __future__ import annotations

import numpy as np

from deepsuite.common.batches import EpochSeeded


class MixupBatches(EpochSeeded):
    """Training batches of mixup (Zhang et al., 2018): each image blended with a shuffled partner,
    x = lam * a + (1 - lam) * b with lam ~ Beta(alpha, alpha), the one-hot labels and the class weights
    blended alike (class weights become sample weights). Pixels stay uint8, as the model expects.
    Each epoch's pairs and blends come from (seed, epoch) only, so a resumed run draws the same ones.
    `x` may be a streamed folder's `ImageFiles`: each batch then decodes its images and their partners, on
    `workers` threads, and blends them as it would the arrays."""

    def __init__(self, x: np.ndarray, y: np.ndarray, num_classes: int, batch_size: int, alpha: float,
                 class_weight: dict[int, float] | None, seed: int, workers: int | None = None):
        # Keras's own worker pool would prefetch batches across `set_epoch` (the JAX trainer starts it on a
        # peeked batch), so the epoch would begin with another epoch's draws: a batch's files decode on
        # `workers` threads of its own instead
        super().__init__()
        self.decode_threads = int(workers or 1)
        self.x, self.y, self.batch_size, self.alpha = x, y, batch_size, alpha
        self.onehot = np.eye(num_classes, dtype="float32")[y]
        weights = np.ones(num_classes, "float32") if class_weight is None else \
            np.array([class_weight[c] for c in range(num_classes)], "float32")
        self.weights = weights[y]
        self.seed = seed
        self._drawn = (None, None)   # (epoch, (order, partner, lam)), replaced whole

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch_size)

    def _draw(self):
        epoch = self.epoch
        drawn_epoch, drawn = self._drawn
        if drawn_epoch != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            drawn = (rng.permutation(len(self.y)), rng.permutation(len(self.y)),
                     rng.beta(self.alpha, self.alpha, len(self.y)).astype("float32"))
            self._drawn = (epoch, drawn)
        return drawn

    def __getitem__(self, index: int):
        rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
        order, partner, lam = self._draw()
        a, b, lam = order[rows], partner[rows], lam[rows]
        shape = (-1,) + (1,) * (self.x.ndim - 1)
        images = lam.reshape(shape) * self._pixels(a) + (1 - lam.reshape(shape)) * self._pixels(b)
        labels = lam[:, None] * self.onehot[a] + (1 - lam[:, None]) * self.onehot[b]
        weights = lam * self.weights[a] + (1 - lam) * self.weights[b]
        return np.clip(np.rint(images), 0, 255).astype("uint8"), labels, weights

    def _pixels(self, rows: np.ndarray) -> np.ndarray:
        part = self.x[rows]
        return part.read(threads=self.decode_threads) if hasattr(part, "read") else part
