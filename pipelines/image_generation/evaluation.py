"""FID and KID between EMA samples and the test images (with the real-vs-real floor beside them), precision and
recall of the generated distribution, a sample grid, the per-epoch sample grid and a latent interpolation figure.

All distances are on the penultimate-layer features of the FID classifier (features.py: trained once by this
pipeline on the training images, cached in the data cache; not Inception, whose weights cannot be fetched
here). N = min(evaluation.samples, test images) generated images against the first N test images; the floor is
N real training images against the same N test images: what a perfect generator would score with this N.
"""
from __future__ import annotations

import numpy as np

from deepsuite.common.pipeline import Evaluation, Splits, to_numpy
from deepsuite.pipelines.image_generation import features, grids
from deepsuite.pipelines.image_generation.config import ImageGenerationConfig
from deepsuite.pipelines.image_generation.data import to_uint8

INTERPOLATION_ROWS, INTERPOLATION_STEPS = 6, 10


def sample(model, n: int, seed: int | None, batch: int = 500) -> np.ndarray:
    """n EMA-generator images in [-1, 1], from NumPy-seeded latents."""
    z = grids.latents(n, model.latent_dim, seed)
    return np.asarray(to_numpy(model.predict(z, batch_size=batch, verbose=0)), np.float32)


def feature_scores(extract, generated: np.ndarray, splits: Splits, config: ImageGenerationConfig) -> dict:
    """FID, KID (+ std), precision and recall of `generated` (N images in [-1, 1]) against the first N test images,
    and the real-vs-real floor (N training images vs the same test images), on `extract`'s features. What the
    run's test metrics are and what a bench scores a peer's images with, so both are measured identically."""
    settings = config.evaluation
    n = len(generated)
    real_pool = np.concatenate([splits.train.x, splits.val.x])
    real = real_pool[np.random.default_rng(config.seed).permutation(len(real_pool))[:n]]

    def feats(images):
        return np.asarray(to_numpy(extract.predict(images, batch_size=500, verbose=0)), np.float64)

    test_f, fake_f, real_f = feats(splits.test.x[:n]), feats(generated), feats(real)
    kid_subset = min(settings.kid_subset, n)
    kid, kid_std = features.kernel_inception_distance(fake_f, test_f, kid_subset, seed=config.seed)
    real_kid, _ = features.kernel_inception_distance(real_f, test_f, kid_subset, seed=config.seed)
    precision, recall = features.precision_recall(test_f, fake_f)
    return {"fid": features.frechet_distance(fake_f, test_f), "kid": kid, "kid_std": kid_std,
            "real_fid": features.frechet_distance(real_f, test_f), "real_kid": real_kid,
            "precision": precision, "recall": recall, "samples": float(n)}


def evaluate(model, splits: Splits, config: ImageGenerationConfig) -> Evaluation:
    settings = config.evaluation
    n = min(settings.samples, len(splits.test))
    generated = sample(model, n, config.seed)
    _, facts = features.classifier(config, splits)  # the cached yardstick's facts (it is trained by now)
    metrics = {**feature_scores(model.features, generated, splits, config),
               "feature_classifier_accuracy": float(facts["test_accuracy"])}
    kid, real_kid, precision, recall = (metrics[k] for k in ("kid", "real_kid", "precision", "recall"))
    side = settings.grid
    figures = {
        "samples": grids.figure(grids.mosaic(to_uint8(generated[: side * side]), side),
                                f"{side * side} samples of the EMA generator (seed {config.seed})"),
        "latent_interpolation": grids.figure(_interpolation(model, config.seed), "Spherical interpolation between "
                                             "random latents (each row: left to right)"),
        "real_test_images": grids.figure(grids.mosaic(to_uint8(splits.test.x[: side * side]), side),
                                         "Test images, for comparison"),
    }
    by_epoch = model.epoch_sample_rows() if hasattr(model, "epoch_sample_rows") else np.zeros((0,))
    if len(by_epoch):
        rows, count = by_epoch.shape[:2]
        figures["samples_by_epoch"] = grids.figure(
            grids.mosaic(to_uint8(by_epoch.reshape(rows * count, *by_epoch.shape[2:])), count),
            f"The same {count} latents after each epoch (rows: epochs 1-{rows}, top to bottom)")
    floor = (f"FID {metrics['fid']:.3f} / KID {kid:.5f} (generated vs test) beside the real-vs-real floor "
             f"FID {metrics['real_fid']:.3f} / KID {real_kid:.5f} (train vs test), N = {n} each")
    notes = [floor,
             f"features: the penultimate layer ({settings.feature_dim} units) of a Fashion-MNIST-style classifier "
             f"trained once by this pipeline and cached (test accuracy {facts['test_accuracy']:.4f}, "
             f"{facts['train_images']} training images); not Inception, so the figures compare with this suite's "
             "runs, not with published Inception FIDs",
             f"precision {precision:.3f} / recall {recall:.3f}: improved k-NN precision/recall (k=3) on the same "
             "features"]
    table = "metric,generated_vs_test,real_vs_test\n" + \
        f"fid,{metrics['fid']:.6f},{metrics['real_fid']:.6f}\nkid,{kid:.6f},{real_kid:.6f}\n"
    return Evaluation(metrics, figures, {"fid_kid.csv": table}, notes)


def _interpolation(model, seed: int) -> np.ndarray:
    ends = grids.latents(2 * INTERPOLATION_ROWS, model.latent_dim, seed + 1)
    z = np.concatenate([grids.slerp(ends[2 * i], ends[2 * i + 1], INTERPOLATION_STEPS)
                        for i in range(INTERPOLATION_ROWS)])
    images = np.asarray(to_numpy(model.predict(z, verbose=0)))
    return grids.mosaic(to_uint8(images), INTERPOLATION_STEPS)
