"""How far an image lies from the training images, in the model's own feature space (out-of-distribution score).

Features: what the classification head sees, the global-average-pooled last feature map ("gap") of the
classifier (of every member of an ensemble, side by side), square-rooted: pooled ReLU activations are
non-negative and right-skewed, and the square root brings them closer to the Gaussian the distance assumes
(with it the CT slice of pydicom's test files scored 4.9 instead of 1.4 times the threshold on a smoke model,
2.0 instead of 1.9 on a default-recipe one).

Each class of the training split gets a Gaussian: its mean and its own covariance, shrunk towards a
multiple of the identity by the Ledoit-Wolf (2004) estimate of the best shrinkage (a small ridge on top),
so it stays invertible when features outnumber a class's images. The score is the squared Mahalanobis
distance to the nearest class plus the log-determinant of that class's covariance (less the smallest),
i.e. twice the negative log-likelihood of the best-fitting class, up to a constant:

    score(f) = min_k (f - mu_k)' S_k^-1 (f - mu_k) + ln|S_k| - min_j ln|S_j|

Why a covariance and a threshold per class: pneumonia is 74 % of PneumoniaMNIST's training images, and with
one covariance shared by both classes and one pooled quantile, validation normals were flagged at 1.3 to 34
times the rate of pneumonia images, so the share of a site's images flagged followed its prevalence
(PneumoniaMNIST's test split has 37.5 % normals against validation's 26 %).

Threshold: chosen on the VALIDATION split. For each class, the ceil((n + 1)(1 - rate))-th smallest of its
n validation scores (the split-conformal quantile: a new image of that class, drawn like the validation
ones, exceeds it with probability at most `rate`; a class with fewer than 1/rate - 1 images gives its
largest score); the threshold is the largest of these, so at most `rate` of each class is flagged, and so
of any mix of classes.

Keras models and numpy only, no backend-specific code (tested on TensorFlow and on JAX without TensorFlow).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepsuite.common.workers import default_workers

OOD_FILE = "ood.npz"   # in the export folder, beside model.keras
FEATURES = "gap"       # the layer of each classifier whose output is the feature vector
BATCH = 512
RIDGE = 1e-6           # added to the diagonal, relative to the mean feature variance


def feature_extractor(model, workers: int | None = None):
    """images (N x H x W x C uint8, or a streamed folder's ImageFiles, decoded a batch at a time on `workers`
    threads) -> features (N x D float64): each classifier's pooled last feature map."""
    import keras

    from deepsuite.common.data.image_files import ImageFiles

    from deepsuite.pipelines.medical_imaging.model import PREPROCESSED, classifiers_of

    preprocess = keras.Model(model.input, model.get_layer(PREPROCESSED).output)
    heads = [keras.Model(c.input, c.get_layer(FEATURES).output) for c in classifiers_of(model)]

    def features(images: np.ndarray) -> np.ndarray:
        parts = []
        for start in range(0, len(images), BATCH):
            chunk = images[start:start + BATCH]
            if isinstance(chunk, ImageFiles):
                chunk = chunk.read(threads=workers or default_workers())
            pixels = preprocess(chunk, training=False)
            parts.append(np.concatenate([keras.ops.convert_to_numpy(head(pixels, training=False)) for head in heads],
                                        axis=1))
        stacked = np.concatenate(parts) if parts else np.zeros((0, 0))
        return np.sqrt(np.maximum(stacked.astype("float64"), 0.0))

    return features


def shrunk_covariance(centred: np.ndarray) -> np.ndarray:
    """Ledoit-Wolf shrinkage of the covariance of centred rows towards mu * I, plus a small ridge."""
    n, d = centred.shape
    sample = centred.T @ centred / max(n, 1)
    mu = float(np.trace(sample)) / d
    dispersion = float(((sample - mu * np.eye(d)) ** 2).sum()) / d
    # mean squared distance of the rows' outer products from the sample covariance, over n
    spread = (float(((centred ** 2).sum(axis=1) ** 2).sum()) / max(n, 1) ** 2 - float((sample ** 2).sum()) / max(n, 1)) / d
    shrinkage = 1.0 if dispersion <= 0 else min(max(spread, 0.0), dispersion) / dispersion
    covariance = shrinkage * mu * np.eye(d) + (1.0 - shrinkage) * sample
    return covariance + RIDGE * (mu if mu > 0 else 1.0) * np.eye(d)


@dataclass
class Detector:
    """One Gaussian per class in feature space; `score` is low for images like the training ones."""

    means: np.ndarray        # K x D
    precisions: np.ndarray   # K x D x D, inverse covariances
    offsets: np.ndarray      # K, ln|S_k| - min_j ln|S_j|

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray) -> "Detector":
        classes = [k for k in np.unique(labels)]
        means, precisions, logdets = [], [], []
        for k in classes:
            rows = features[labels == k]
            mean = rows.mean(axis=0)
            covariance = shrunk_covariance(rows - mean)
            _, logdet = np.linalg.slogdet(covariance)
            means.append(mean)
            precisions.append(np.linalg.inv(covariance))
            logdets.append(logdet)
        logdets = np.asarray(logdets)
        return cls(np.stack(means), np.stack(precisions), logdets - logdets.min())

    def score(self, features: np.ndarray) -> np.ndarray:
        distances = []
        for mean, precision, offset in zip(self.means, self.precisions, self.offsets):
            centred = features - mean
            distances.append(np.einsum("nd,de,ne->n", centred, precision, centred) + offset)
        return np.min(distances, axis=0)

    def save(self, path: Path) -> None:
        np.savez(path, means=self.means, precisions=self.precisions, offsets=self.offsets)

    @classmethod
    def load(cls, path: Path) -> "Detector":
        with np.load(path, allow_pickle=False) as stored:
            return cls(stored["means"], stored["precisions"], stored["offsets"])


def conformal_quantile(scores: np.ndarray, rate: float) -> float:
    """The ceil((n + 1)(1 - rate))-th smallest score (the largest when n is too small for that)."""
    ordered = np.sort(np.asarray(scores, dtype="float64"))
    rank = min(math.ceil((len(ordered) + 1) * (1.0 - rate)), len(ordered))
    return float(ordered[rank - 1])


def class_balanced_threshold(scores: np.ndarray, labels: np.ndarray, rate: float) -> float:
    """The largest of the classes' conformal quantiles: at most `rate` of each class above it."""
    return max(conformal_quantile(scores[labels == k], rate) for k in np.unique(labels))
