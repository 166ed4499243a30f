"""Latents and image mosaics shared by the report's figures and `generate`: seeded Gaussian latents, spherical
interpolation between latents, and one uint8 mosaic of many small images (a 1-pixel gutter between them)."""
from __future__ import annotations

import math

import numpy as np


def latents(n: int, dim: int, seed: int | None) -> np.ndarray:
    """n standard-normal latents; the same seed gives the same latents on every backend (NumPy draws them)."""
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def slerp(a: np.ndarray, b: np.ndarray, steps: int) -> np.ndarray:
    """`steps` latents on the great circle from a to b (spherical: Gaussian latents live near a sphere)."""
    unit_a, unit_b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    omega = math.acos(float(np.clip(np.dot(unit_a, unit_b), -1.0, 1.0)))
    out = []
    for t in np.linspace(0.0, 1.0, steps):
        if omega < 1e-6:
            out.append((1 - t) * a + t * b)
        else:
            out.append((math.sin((1 - t) * omega) * a + math.sin(t * omega) * b) / math.sin(omega))
    return np.stack(out).astype(np.float32)


def mosaic(images: np.ndarray, columns: int | None = None, gutter: int = 1) -> np.ndarray:
    """N x H x W x C uint8 -> one (rows*(H+g)-g) x (cols*(W+g)-g) x C uint8 image, row-major, black gutters."""
    images = np.asarray(images)
    count, height, width, channels = images.shape
    columns = columns or max(1, math.ceil(math.sqrt(count)))
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    out = np.zeros((rows * (height + gutter) - gutter, columns * (width + gutter) - gutter, channels), np.uint8)
    for k, image in enumerate(images):
        r, c = divmod(k, columns)
        top, left = r * (height + gutter), c * (width + gutter)
        out[top: top + height, left: left + width] = image
    return out


def figure(image: np.ndarray, title: str):
    """A matplotlib figure showing one mosaic."""
    from deepsuite.common.reports import pyplot

    plt = pyplot()
    height, width = image.shape[:2]
    fig, ax = plt.subplots(figsize=(max(3.0, width / 40), max(3.0, height / 40) + 0.4))
    ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray" if image.shape[-1] == 1 else None,
              interpolation="nearest")
    ax.axis("off")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
