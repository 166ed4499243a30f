"""What crosses the image-generation stages, typed: the export metadata and `generate`'s options."""
from __future__ import annotations

from pathlib import Path

from pydantic import Field

from deepsuite.common.commands import Options, output_field
from deepsuite.common.export import ExportMetadata

MAX_IMAGES = 1024  # one request's work under the server's model lock stays bounded


class ImageGenerationMetadata(ExportMetadata):
    """What `load_data` learns about the images that the model and `generate` need."""

    image_shape: tuple[int, int, int] = Field(..., description="(height, width, channels) of the training images")
    latent_dim: int = Field(..., description="size of the generator's Gaussian input")
    class_names: list[str] = Field(default_factory=list, description="the source's classes (unconditional model: "
                                                                     "for the record only)")


class GenerateOptions(Options):
    """`deepsuite generate MODEL --n 64 --seed 1 --output grid.png`; JSON {"n": 16, "seed": 1}."""

    n: int = Field(64, ge=1, le=MAX_IMAGES, description=f"images to generate (at most {MAX_IMAGES})")
    seed: int | None = Field(None, ge=0, lt=2**31, description="random seed: the same seed gives the same images")
    columns: int | None = Field(None, ge=1, le=64, description="grid columns (default: about sqrt(n))")
    output: Path | None = output_field("PNG file of the grid (a folder: grid.png inside it)")
