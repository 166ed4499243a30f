"""What crosses the image-denoising pipeline's stage boundaries: the export metadata and `denoise`'s options."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from deepsuite.common.commands import Options, inputs_field, output_field
from deepsuite.common.export import ExportMetadata
from deepsuite.pipelines.image_denoising.config import NoiseConfig


class ImageDenoisingMetadata(ExportMetadata):
    """What the model was trained on: `denoise` needs the channels and the size multiple, the rest is lineage."""

    channels: Literal[1, 3] = Field(description="1: grey model (colour files are denoised per channel); 3: RGB")
    size_multiple: int = Field(ge=1, description="image sides the model takes are multiples of this "
                                                 "(denoise pads and crops back)")
    noise: NoiseConfig = Field(description="the noise the model was trained on")
    noise_label: str = Field(description="the same, in words, e.g. 'gaussian sigma=25'")
    train_images: list[str] = Field(default_factory=list)
    val_images: list[str] = Field(default_factory=list)
    skipped_small_images: list[str] = Field(default_factory=list,
                                            description="training images smaller than a patch, not used")
    test_images: list[str] = Field(default_factory=list)


MAX_TILE = 1024  # pixels a side: one tile's activations stay bounded whatever the image


class DenoiseOptions(Options):
    """`deepsuite denoise MODEL FILE... [-o OUT] [--tile N] [--overlap N]`."""

    inputs: list[str] = inputs_field("noisy image files", files=True)
    output: Path | None = output_field("output file (one input) or folder")
    tile: int = Field(256, le=MAX_TILE, description=f"tile size for large images (at most {MAX_TILE})")
    overlap: int = Field(32, description="tile overlap in pixels")
