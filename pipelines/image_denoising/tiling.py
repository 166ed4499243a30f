"""Denoise images of any size in overlapping tiles, so memory depends on the tile, not the image.

Tiles are blended with weights that ramp linearly across the overlap: a pixel near a tile's edge,
where the network saw zero padding instead of real context, counts less than one seen from the middle
of the neighbouring tile, so no seams appear. Every tile has the same shape, so the model compiles once.
"""
from __future__ import annotations

import math

import numpy as np

from deepsuite.common.errors import DeepsuiteError

TILE_BATCH = 4  # tiles per model call: bounded memory, fewer calls


def check_tiling(tile: int, overlap: int) -> None:
    if tile < 16:
        raise DeepsuiteError(f"--tile must be at least 16 pixels, got {tile}")
    if not 0 <= overlap < tile // 2:
        raise DeepsuiteError(f"--overlap must be between 0 and half the tile ({tile // 2 - 1}), got {overlap}")


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets covering [0, length) with tiles of `tile` pixels overlapping by >= `overlap`."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, tile - overlap))
    return starts + [length - tile]


def blend_window(height: int, width: int, overlap: int) -> np.ndarray:
    def ramp(n: int) -> np.ndarray:
        w = np.ones(n, np.float32)
        k = min(overlap, n // 2)
        if k:
            r = (np.arange(k, dtype=np.float32) + 1) / (k + 1)
            w[:k], w[n - k:] = r, r[::-1]
        return w

    return np.outer(ramp(height), ramp(width))[..., None]


def pad_to_multiple(batch: np.ndarray, multiple: int) -> np.ndarray:
    """Mirror-pad (N, H, W, C) at the bottom/right so H and W are multiples of `multiple`."""
    h, w = batch.shape[1:3]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        batch = np.pad(batch, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="symmetric")
    return batch


def run_model(model, batch: np.ndarray, multiple: int) -> np.ndarray:
    from deepsuite.common.pipeline import to_numpy

    h, w = batch.shape[1:3]
    out = to_numpy(model.predict_on_batch(pad_to_multiple(batch.astype(np.float32), multiple)))
    return out[:, :h, :w]


def denoise_array(model, image: np.ndarray, tile: int, overlap: int, multiple: int) -> tuple[np.ndarray, int]:
    """Denoise one HxWxC float image (C = the model's channels); returns (image, number of tiles)."""
    height, width = image.shape[:2]
    tile = int(math.ceil(tile / multiple) * multiple)
    th, tw = min(tile, height), min(tile, width)
    boxes = [(top, left) for top in tile_starts(height, th, overlap) for left in tile_starts(width, tw, overlap)]
    if len(boxes) == 1:
        return run_model(model, image[None], multiple)[0], 1
    window = blend_window(th, tw, overlap)
    total = np.zeros(image.shape, np.float32)
    weight = np.zeros(image.shape[:2] + (1,), np.float32)
    for k in range(0, len(boxes), TILE_BATCH):
        group = boxes[k:k + TILE_BATCH]
        tiles = np.stack([image[t:t + th, l:l + tw] for t, l in group])
        for (t, l), out in zip(group, run_model(model, tiles, multiple)):
            total[t:t + th, l:l + tw] += out * window
            weight[t:t + th, l:l + tw] += window
    return total / weight, len(boxes)


def dihedral(image: np.ndarray, k: int, inverse: bool = False) -> np.ndarray:
    """The k-th (0..7) of the 8 flips/rotations of an HxWxC image, or its inverse."""
    turns, flip = k % 4, k >= 4
    if inverse:
        image = np.rot90(image, k=-turns, axes=(0, 1))
        return np.ascontiguousarray(image[:, ::-1] if flip else image)
    image = image[:, ::-1] if flip else image
    return np.ascontiguousarray(np.rot90(image, k=turns, axes=(0, 1)))


def denoise_any_channels(model, image: np.ndarray, model_channels: int, tile: int, overlap: int,
                         multiple: int, self_ensemble: bool = False) -> tuple[np.ndarray, int]:
    """Grey model on colour: channel by channel; colour model on grey: replicate, then average back.

    `self_ensemble` denoises all 8 flips/rotations of the image and averages the results turned back
    (the "+" variants of EDSR/DnCNN papers): about 8x the time, typically a little higher PSNR.
    """
    if self_ensemble:
        total, tiles = None, 0
        for k in range(8):
            out, count = denoise_any_channels(model, dihedral(image, k), model_channels, tile, overlap, multiple)
            out = dihedral(out, k, inverse=True)
            total, tiles = (out if total is None else total + out), tiles + count
        return total / 8, tiles
    channels = image.shape[-1]
    if channels == model_channels:
        return denoise_array(model, image, tile, overlap, multiple)
    if model_channels == 1:
        planes = [denoise_array(model, image[..., c:c + 1], tile, overlap, multiple) for c in range(channels)]
        return np.concatenate([p for p, _ in planes], axis=-1), sum(n for _, n in planes)
    out, count = denoise_array(model, np.repeat(image, model_channels, axis=-1), tile, overlap, multiple)
    return out.mean(axis=-1, keepdims=True), count
