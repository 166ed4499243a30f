"""BM3D (the `bm3d` package, Mäkinen et al. 2020's implementation; licensed for non-commercial use) and non-local
means (scikit-image) on exactly the noisy images the pipeline's evaluation scored: the denoising bench's peers.

The noisy images are rebuilt with the evaluation's own `test_noise` (seeded by run seed and image index), and the
caller checks each one's PSNR against the run's per-image table, so a peer can never see other noise than ours.
BM3D is given the true noise sigma (its usual, favourable protocol); non-local means estimates it, as the
pipeline's baseline does.
"""
from __future__ import annotations

import time

import numpy as np


def classical_psnrs(images, noise, seed: int) -> dict[str, list[tuple[float, float, float]]]:
    """{"BM3D": [(noisy PSNR, PSNR, seconds) per image], "non-local means": [...]}; images are clean floats 0..1."""
    import bm3d

    from deepsuite.pipelines.image_denoising.evaluation import nl_means, psnr, test_noise

    out = {"BM3D": [], "non-local means": []}
    for index, clean in enumerate(images):
        noisy = test_noise(clean, noise, seed, index)
        base = psnr(clean, noisy)
        for name, method in (("BM3D", lambda x: bm3d.bm3d(x.squeeze(), sigma_psd=noise.sigma / 255.0)),
                             ("non-local means", nl_means)):
            started = time.perf_counter()
            denoised = np.clip(np.asarray(method(noisy), np.float32).reshape(clean.shape), 0, 1)
            out[name].append((base, psnr(clean, denoised), time.perf_counter() - started))
    return out
