"""`deepsuite generate` for image generation: n images from the EMA generator, seeded, as a PNG grid and arrays."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from deepsuite.common.errors import DataError
from deepsuite.common.export import Export
from deepsuite.common.pipeline import to_numpy
from deepsuite.pipelines.image_generation import grids
from deepsuite.pipelines.image_generation.contract import GenerateOptions, ImageGenerationMetadata
from deepsuite.pipelines.image_generation.data import to_uint8

GRID_FILE = "grid.png"


def generate(model, export: Export, options: GenerateOptions) -> list[dict]:
    """One answer: the grid's path when `output` is given (a folder gets grid.png inside), and the images
    themselves as uint8 pixel arrays (H x W, or H x W x C) unless `output` names a PNG file: the server (and
    the MLflow model) writes into a folder of its own, so a request always gets the pixels."""
    metadata: ImageGenerationMetadata = export.metadata
    started = time.perf_counter()
    z = grids.latents(options.n, metadata.latent_dim, options.seed)
    images = to_uint8(to_numpy(model.predict(z, batch_size=256, verbose=0)))
    seconds = time.perf_counter() - started
    answer = {"n": options.n, "seed": options.seed, "image_shape": list(images.shape[1:]),
              "seconds": round(seconds, 3)}
    to_file = options.output is not None
    if to_file:
        path = Path(options.output).expanduser()
        if path.is_dir() or not path.suffix:
            path = path / GRID_FILE
        if path.suffix.lower() != ".png":
            raise DataError(f"--output {path}: the grid is a PNG; name a .png file or a folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        save_png(grids.mosaic(images, options.columns), path)
        answer |= {"output": str(path), "summary": f"{options.n} images (seed {options.seed}) -> {path}"}
    if not to_file or Path(options.output).is_dir():  # a folder (the server's): the pixels come back too
        answer["images"] = [(image[..., 0] if image.shape[-1] == 1 else image).tolist() for image in images]
        answer.setdefault("summary", f"{options.n} images of {images.shape[1]}x{images.shape[2]} (seed "
                                     f"{options.seed}); --output grid.png writes them as one grid")
    return [answer]


def save_png(image: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(path, format="PNG")
