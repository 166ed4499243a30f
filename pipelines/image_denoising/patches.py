"""Random noisy/clean training patches, made on the fly as a `keras.utils.PyDataset` (no tf.data needed).

Every batch is drawn from a generator seeded by (seed, epoch, batch index), so a run is repeatable and
each epoch sees fresh patches and fresh noise: with a few large photographs the network never sees the
same noisy patch twice, which is what keeps a small training set from being memorised.
"""
from __future__ import annotations

import math

import numpy as np

from deepsuite.common.batches import EpochSeeded
from deepsuite.common.errors import DataError
from deepsuite.pipelines.image_denoising.config import NoiseConfig
from deepsuite.pipelines.image_denoising.noise import add_noise


def usable(images: list[np.ndarray], names: list[str], patch_size: int) -> tuple[list[np.ndarray], list[str], list[str]]:
    """Drop images smaller than a patch; (kept images, kept names, dropped names)."""
    keep = [i for i, image in enumerate(images) if min(image.shape[:2]) >= patch_size]
    dropped = [names[i] for i in range(len(images)) if i not in set(keep)]
    if not keep:
        largest = max(images, key=lambda im: min(im.shape[:2]), default=None)
        size = "no images" if largest is None else f"the largest is {largest.shape[1]}x{largest.shape[0]}"
        raise DataError(f"all {len(images)} training images are smaller than data.patch_size={patch_size} ({size}); "
                        f"lower it, e.g. --set data.patch_size={min(largest.shape[:2]) if largest is not None else 8}")
    return [images[i] for i in keep], [names[i] for i in keep], dropped


def sample_patches(images: list[np.ndarray], count: int, patch_size: int, rng: np.random.Generator,
                   augment: bool, sampling: str = "area") -> np.ndarray:
    """`count` random clean patches (count, P, P, C); images are picked in proportion to their area
    (`sampling="area"`) or all equally often (`"image"`, so one very large photograph does not dominate)."""
    if sampling == "image":
        weights = np.ones(len(images))
    else:
        weights = np.array([(im.shape[0] - patch_size + 1) * (im.shape[1] - patch_size + 1) for im in images], float)
    picks = rng.choice(len(images), size=count, p=weights / weights.sum())
    out = np.empty((count, patch_size, patch_size, images[0].shape[-1]), dtype=np.float32)
    for k, index in enumerate(picks):
        image = images[index]
        top = rng.integers(0, image.shape[0] - patch_size + 1)
        left = rng.integers(0, image.shape[1] - patch_size + 1)
        patch = image[top:top + patch_size, left:left + patch_size]
        if augment:  # one of the 8 flips/rotations of the square
            patch = np.rot90(patch, k=int(rng.integers(4)))
            if rng.integers(2):
                patch = patch[:, ::-1]
        out[k] = patch
    return out


class NoisyPatches(EpochSeeded):
    """Batches of (noisy, clean) float32 patches; `len()` batches per epoch, drawn from (seed, epoch, batch)
    only, so a resumed run draws what the uninterrupted one would have."""

    def __init__(self, images: list[np.ndarray], patch_size: int, batch_size: int, patches_per_epoch: int,
                 noise: NoiseConfig, seed: int, augment: bool = True, sampling: str = "area"):
        super().__init__(workers=1, use_multiprocessing=False)
        self.images, self.patch_size, self.batch_size = images, patch_size, batch_size
        self.noise, self.seed, self.augment, self.sampling = noise, seed, augment, sampling
        self.batches = max(1, math.ceil(patches_per_epoch / batch_size))

    def __len__(self) -> int:
        return self.batches

    def __getitem__(self, index: int):
        rng = np.random.default_rng([self.seed, self.epoch, index])
        clean = sample_patches(self.images, self.batch_size, self.patch_size, rng, self.augment, self.sampling)
        return add_noise(clean, self.noise, rng, blind=True), clean


def fixed_patches(images: list[np.ndarray], count: int, patch_size: int, noise: NoiseConfig,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Validation arrays (noisy, clean): the same patches and the same noise (at `noise.sigma`) every epoch."""
    rng = np.random.default_rng([seed, 7919])
    clean = sample_patches(images, count, patch_size, rng, augment=False)
    return add_noise(clean, noise, rng, blind=False), clean
