"""Noise models applied on the fly to clean float images on the 0..1 scale (NumPy, backend-free).

Gaussian noise follows the benchmark protocol behind the published Set12 numbers (DnCNN, BM3D): additive,
zero-mean, sigma given on the 0..255 scale, and *not* clipped or quantised, so our PSNR is comparable
with theirs. A `sigma_range` trains a blind model (one sigma drawn per patch). Poisson noise models
photon counting (`peak` photons at white); salt-and-pepper sets a fraction `amount` of pixels to 0 or 1.
"""
from __future__ import annotations

import numpy as np

from deepsuite.pipelines.image_denoising.config import NoiseConfig


def add_noise(clean: np.ndarray, noise: NoiseConfig, rng: np.random.Generator, blind: bool = False) -> np.ndarray:
    """Return a noisy float32 copy of `clean` (float, 0..1; any shape, batch first when `blind`).

    With `blind` and a `sigma_range`, each item along the first axis gets its own sigma (training);
    otherwise the fixed `sigma` is used (evaluation).
    """
    clean = np.asarray(clean, dtype=np.float32)
    if noise.kind == "gaussian":
        sigma = _sigmas(clean, noise, rng, blind)
        return clean + rng.standard_normal(clean.shape, dtype=np.float32) * sigma
    if noise.kind == "poisson":
        return (rng.poisson(np.clip(clean, 0, 1) * noise.peak) / noise.peak).astype(np.float32)
    noisy = clean.copy()  # salt_pepper
    hit = rng.random(clean.shape[:-1]) < noise.amount if clean.ndim >= 3 else rng.random(clean.shape) < noise.amount
    salt = rng.random(hit.shape) < 0.5
    noisy[hit & salt] = 1.0
    noisy[hit & ~salt] = 0.0
    return noisy


def _sigmas(clean: np.ndarray, noise: NoiseConfig, rng: np.random.Generator, blind: bool):
    if blind and noise.sigma_range is not None:
        low, high = noise.sigma_range
        per_item = rng.uniform(low, high, size=(clean.shape[0],) + (1,) * (clean.ndim - 1))
        return (per_item / 255.0).astype(np.float32)
    return np.float32(noise.sigma / 255.0)


def describe(noise: NoiseConfig) -> str:
    """A short human label, e.g. 'gaussian sigma=25' (used in figure titles and notes)."""
    if noise.kind == "gaussian":
        blind = f" (trained blind on {noise.sigma_range[0]:g}..{noise.sigma_range[1]:g})" if noise.sigma_range else ""
        return f"gaussian sigma={noise.sigma:g}{blind}"
    if noise.kind == "poisson":
        return f"poisson peak={noise.peak:g}"
    return f"salt-and-pepper amount={noise.amount:g}"
