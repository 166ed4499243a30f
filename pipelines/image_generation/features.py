"""The yardstick FID and KID are measured with: a small classifier of the training data's classes, trained once by
this pipeline and cached in the data cache, whose penultimate layer gives the features.

The literature's FID uses Inception-v3 features from ImageNet; those weights cannot be downloaded here, and on
28x28 grey clothes a classifier of the data's own classes is the usual substitute (e.g. the "FID on a LeNet/CNN"
of the Fashion-MNIST GAN literature). Figures are comparable between runs that share the classifier: the same
data (digest) and the same `evaluation.feature_*` settings; its cache key is exactly that, never the run's seed.

    [-1, 1] image -> (Conv3x3-BN-ReLU) x2, max-pool -> (Conv3x3-BN-ReLU) x2, max-pool -> flatten
    -> Dense(feature_dim)-ReLU  [the features]  -> Dense(classes) softmax

Also here, in NumPy/SciPy (float64): the Fréchet distance between two feature sets' Gaussians and the kernel
inception distance (KID: the unbiased squared MMD with the cubic polynomial kernel, averaged over subsets).
"""
from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
from keras import layers

from deepsuite.common.data.cache import cache_root, ensure_writable, key_digest
from deepsuite.common.pipeline import Splits

FEATURES_LAYER = "features"
RECIPE_VERSION = 1


def classifier_path(config, splits: Splits) -> tuple[Path, dict]:
    evaluation = config.evaluation
    key = {"data": splits.info.digest, "shape": list(splits.metadata.image_shape),
           "samples": evaluation.feature_train_samples, "epochs": evaluation.feature_epochs,
           "dim": evaluation.feature_dim, "v": RECIPE_VERSION}
    folder = ensure_writable(cache_root(config.data.cache_dir) / "models", "cache")
    return folder / f"fid-classifier-{splits.info.name}-{key_digest(key)}.keras", key


def build_classifier(shape: tuple[int, int, int], classes: int, feature_dim: int) -> keras.Model:
    """Always float32 (a yardstick must not change with the run's precision policy)."""
    inputs = keras.Input(shape=shape, name="image")
    x = inputs
    for stage, width in enumerate((32, 64)):
        for block in range(2):
            x = layers.Conv2D(width, 3, padding="same", use_bias=False, dtype="float32",
                              name=f"conv{stage}_{block}")(x)
            x = layers.BatchNormalization(momentum=0.9, dtype="float32", name=f"bn{stage}_{block}")(x)
            x = layers.ReLU(dtype="float32", name=f"relu{stage}_{block}")(x)
        x = layers.MaxPooling2D(dtype="float32", name=f"pool{stage}")(x)
    x = layers.Flatten(dtype="float32", name="flatten")(x)
    x = layers.Dense(feature_dim, activation="relu", dtype="float32", name=FEATURES_LAYER)(x)
    x = layers.Dropout(0.3, dtype="float32", name="dropout")(x)
    outputs = layers.Dense(classes, activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="fid_classifier")


def classifier(config, splits: Splits, echo=print) -> tuple[keras.Model, dict]:
    """The cached classifier of these data and settings, trained now when there is none; (model, facts)."""
    path, key = classifier_path(config, splits)
    facts_path = path.with_suffix(".json")
    if path.exists() and facts_path.exists():
        try:
            return keras.saving.load_model(path, compile=False), json.loads(facts_path.read_text(encoding="utf-8"))
        except Exception:  # noqa: BLE001 - a damaged cache entry is rebuilt
            pass
    x = np.concatenate([splits.train.x, splits.val.x])
    y = np.concatenate([splits.train.y, splits.val.y]).astype("int32")
    order = np.random.default_rng(RECIPE_VERSION).permutation(len(x))
    if config.evaluation.feature_train_samples:
        order = order[: config.evaluation.feature_train_samples]
    x, y = x[order], y[order]
    classes = max(len(splits.metadata.class_names), int(y.max()) + 1)
    echo(f"training the FID classifier once ({len(x)} images, {config.evaluation.feature_epochs} epochs); "
         f"cached at {path}")
    model = build_classifier(tuple(splits.metadata.image_shape), classes, config.evaluation.feature_dim)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x, y, batch_size=int(np.clip(len(x) // 40, 32, 128)), epochs=config.evaluation.feature_epochs,
              verbose=0, shuffle=True)
    test_y = np.asarray(splits.test.y).astype("int32")
    accuracy = float(np.mean(np.argmax(model.predict(splits.test.x, batch_size=512, verbose=0), axis=1) == test_y))
    facts = {"test_accuracy": accuracy, "train_images": int(len(x)), **key}
    partial = path.with_name(path.name + ".part.keras")
    model.save(partial)
    partial.replace(path)
    facts_path.write_text(json.dumps(facts), encoding="utf-8")
    return model, facts


def extractor(model: keras.Model) -> keras.Model:
    """The classifier cut at its penultimate layer, frozen."""
    features = keras.Model(model.inputs, model.get_layer(FEATURES_LAYER).output, name="fid_features")
    features.trainable = False
    return features


# ---------------------------------------------------------------------------------------------------------
# Distances between feature sets (NumPy/SciPy, float64)

def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(C_a + C_b - 2 (C_a C_b)^(1/2)) between the Gaussians fitted to two feature sets."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # Tr((C_a C_b)^(1/2)) = sum of sqrt(eigenvalues of C_a^(1/2) C_b C_a^(1/2)), a symmetric PSD matrix: stable
    # where scipy's sqrtm of the non-symmetric product warns on (near-)singular covariances
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    inner = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_root = float(np.sum(np.sqrt(np.clip(inner, 0, None))))
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_root)


def kernel_inception_distance(a: np.ndarray, b: np.ndarray, subset: int = 1000, subsets: int = 50,
                              seed: int = 0) -> tuple[float, float]:
    """(mean, std) over random subsets of the unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3 (Binkowski et al.)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    n = min(subset, len(a), len(b))
    rng = np.random.default_rng(seed)
    d = a.shape[1]
    values = []
    for _ in range(subsets):
        x, y = a[rng.choice(len(a), n, replace=False)], b[rng.choice(len(b), n, replace=False)]
        kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
        mmd = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (n * (n - 1)) - 2 * kxy.mean()
        values.append(mmd)
    return float(np.mean(values)), float(np.std(values))


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3, limit: int = 5000) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019): the share of generated features inside the real
    features' k-NN balls (precision) and of real inside the generated ones' (recall)."""
    real, fake = np.asarray(real[:limit], np.float64), np.asarray(fake[:limit], np.float64)

    def radii(x):
        distances = _squared_distances(x, x)
        return np.sqrt(np.sort(distances, axis=1)[:, k])  # column 0 is the point itself

    def covered(points, manifold, r):
        return float(np.mean((_squared_distances(points, manifold) <= r[None, :] ** 2).any(axis=1)))

    return covered(fake, real, radii(real)), covered(real, fake, radii(fake))


def _squared_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.maximum((x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2 * x @ y.T, 0.0)
