"""`deepsuite denoise`: noisy image files in, denoised files out, any size, grey or colour.

Output naming: one input and `-o file.png` writes that file; otherwise `-o` is a folder (created) and
each result is `<stem>-denoised.png` in it; without `-o` results go next to their inputs. 16-bit
greyscale PNG/TIFF inputs are written back as 16-bit when the output format allows it; an alpha channel
is carried over untouched.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from deepsuite.common.errors import DataError
from deepsuite.common.export import Export
from deepsuite.pipelines.image_denoising.contract import DenoiseOptions, ImageDenoisingMetadata
from deepsuite.pipelines.image_denoising.data import decode_image, probe_image
from deepsuite.pipelines.image_denoising.tiling import check_tiling, denoise_any_channels

SIXTEEN_BIT_SUFFIXES = {".png", ".tif", ".tiff"}


def output_paths(inputs: list[str], output: str | Path | None) -> list[Path]:
    if output is None:
        return [Path(p).with_name(f"{Path(p).stem}-denoised.png") for p in inputs]
    output = Path(output).expanduser()
    if len(inputs) == 1 and output.suffix and not output.is_dir():
        return [output]
    if output.exists() and not output.is_dir():
        raise DataError(f"--output {output} must be a folder when denoising {len(inputs)} images")
    return [output / f"{Path(p).stem}-denoised.png" for p in inputs]


def write_image(path: Path, pixels: np.ndarray, alpha: np.ndarray | None, bit_depth: int) -> None:
    from PIL import Image

    pixels = np.clip(pixels, 0, 1)
    grey = pixels.shape[-1] == 1
    if bit_depth == 16 and grey and alpha is None and path.suffix.lower() in SIXTEEN_BIT_SUFFIXES:
        image = Image.fromarray(np.round(pixels[..., 0] * 65535).astype(np.uint16))
    else:
        planes = np.round(pixels * 255).astype(np.uint8)
        if alpha is not None:
            planes = np.concatenate([planes, np.round(alpha * 255).astype(np.uint8)[..., None]], axis=-1)
            image = Image.fromarray(planes, mode="LA" if grey else "RGBA")
        else:
            image = Image.fromarray(planes[..., 0] if grey else planes)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        image.save(path)
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"cannot write {path}: {exc} (use a .png or .tif output name)") from None


def denoise(model, export: Export, options: DenoiseOptions) -> list[dict]:
    metadata: ImageDenoisingMetadata = export.metadata
    inputs, output, tile, overlap = options.inputs, options.output, options.tile, options.overlap
    if not inputs:
        raise DataError("denoise needs at least one image file")
    check_tiling(tile, overlap)
    channels, multiple = metadata.channels, metadata.size_multiple
    for path in inputs:  # headers only: a bad file is reported before any work starts
        probe_image(path)
    results = []
    for path, target in zip(inputs, output_paths(inputs, output)):
        started = time.perf_counter()
        image = decode_image(path)  # one image in memory at a time
        clean, tiles = denoise_any_channels(model, image.pixels, channels, tile, overlap, multiple)
        write_image(target, clean, image.alpha, image.bit_depth)
        seconds = time.perf_counter() - started
        height, width, depth = image.pixels.shape
        kind = "grey" if depth == 1 else "colour"
        results.append({"input": path, "output": str(target), "width": width, "height": height,
                        "channels": depth, "bit_depth": image.bit_depth, "tiles": tiles, "seconds": round(seconds, 3),
                        "noise_trained_on": metadata.noise_label,
                        "summary": f"{path} -> {target} ({width}x{height} {kind}, {image.bit_depth}-bit, "
                                   f"{tiles} tile{'s' if tiles != 1 else ''}, {seconds:.2f} s)"})
    return results
