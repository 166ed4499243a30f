"""Image-quality metrics (PSNR, SSIM) in plain NumPy, so every backend reports the same numbers.

Why not `skimage.metrics` directly: the suite's metric code must not depend on which library computed
it, and a test checks these against scikit-image on the same arrays, so the numbers are comparable
with published ones. SSIM follows Wang et al. (2004) exactly as scikit-image's default does: a 7x7
uniform window, sample covariance, K1=0.01, K2=0.03, averaged over windows that lie fully inside the
image (scikit-image crops the filter's padded border, which leaves exactly those windows).
"""
from __future__ import annotations

import numpy as np

SSIM_WINDOW = 7
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _as_hwc(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 2:
        return image[..., None]
    if image.ndim != 3:
        raise ValueError(f"expected an HxW or HxWxC image, got shape {image.shape}")
    return image


def psnr(clean: np.ndarray, test: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB: 10 log10(range^2 / MSE); inf for identical images."""
    clean, test = _as_hwc(clean), _as_hwc(test)
    if clean.shape != test.shape:
        raise ValueError(f"PSNR needs images of the same shape, got {clean.shape} and {test.shape}")
    mse = float(np.mean((clean - test) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(data_range ** 2 / mse))


def _window_means(image: np.ndarray, size: int) -> np.ndarray:
    """Mean over every size x size window fully inside `image` (HxW), via an integral image."""
    integral = np.pad(image, ((1, 0), (1, 0))).cumsum(axis=0).cumsum(axis=1)
    sums = (integral[size:, size:] - integral[:-size, size:] - integral[size:, :-size] + integral[:-size, :-size])
    return sums / (size * size)


def _ssim_channel(x: np.ndarray, y: np.ndarray, data_range: float, size: int) -> float:
    n = size * size
    cov_norm = n / (n - 1)  # sample covariance, as scikit-image's default
    ux, uy = _window_means(x, size), _window_means(y, size)
    uxx, uyy, uxy = _window_means(x * x, size), _window_means(y * y, size), _window_means(x * y, size)
    vx, vy, vxy = cov_norm * (uxx - ux * ux), cov_norm * (uyy - uy * uy), cov_norm * (uxy - ux * uy)
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
    return float(s.mean())


def ssim(clean: np.ndarray, test: np.ndarray, data_range: float = 1.0, window: int = SSIM_WINDOW) -> float:
    """Mean structural similarity; colour images are the mean over channels (as scikit-image)."""
    clean, test = _as_hwc(clean), _as_hwc(test)
    if clean.shape != test.shape:
        raise ValueError(f"SSIM needs images of the same shape, got {clean.shape} and {test.shape}")
    if min(clean.shape[:2]) < window:
        raise ValueError(f"SSIM needs images of at least {window}x{window} pixels, got {clean.shape[:2]}")
    return float(np.mean([_ssim_channel(clean[..., c], test[..., c], data_range, window)
                          for c in range(clean.shape[-1])]))
