"""What crosses the image-classification stages, typed: the export metadata and the predict options."""
from __future__ import annotations

from pydantic import Field

from deepsuite.common.commands import Options, inputs_field
from deepsuite.common.export import ExportMetadata


class ImageClassificationMetadata(ExportMetadata):
    """What `load_data` learns about the images that the model and `predict` need."""

    class_names: list[str] = Field(..., description="label of each output, in output order")
    input_shape: tuple[int, int, int] = Field(..., description="(height, width, channels) of the training "
                                                               "images; predict converts files to it")


class PredictOptions(Options):
    inputs: list[str] = inputs_field("image files (PNG, JPEG, ...), resized and converted to the training size",
                                     files=True)
    top: int = Field(3, ge=1, description="how many classes to show")
