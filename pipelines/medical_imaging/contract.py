"""What crosses the medical-imaging stages, typed: the export metadata and the predict options."""
from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from deepsuite.common.commands import Options, inputs_field, output_field
from deepsuite.common.export import ExportMetadata


class PatientSplit(BaseModel):
    """Patients per split of a folder source and how many are in more than one (0 proves a clean split)."""

    model_config = ConfigDict(extra="forbid")

    known: bool = Field(..., description="patient ids were found in every split")
    shared_patients: int
    train: int
    val: int
    test: int


class Decision(BaseModel):
    """The binary operating point chosen on validation; predict applies the same threshold."""

    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(..., description="on p(positive_class)")
    positive_class: str
    policy: str = Field(..., description="evaluation.threshold_policy it was chosen by")


class MedicalImagingMetadata(ExportMetadata):
    """What `load_data` (and, for `decision`, `evaluate`) learn that the model and `predict` need."""

    class_names: list[str] = Field(..., description="label of each output, in output order")
    input_shape: tuple[int, int, int] = Field(..., description="(height, width, channels) of the stored images; "
                                                               "predict crops and resizes files to it")
    positive_index: int | None = Field(None, description="the disease class of a binary task; None: multi-class")
    split: str = Field(..., description="how the splits were made, for the report")
    patient_split: PatientSplit | None = Field(None, description="folder sources with patient ids only")
    decision: Decision | None = Field(None, description="binary tasks: set by evaluate once the threshold is chosen")


class PredictOptions(Options):
    inputs: list[str] = inputs_field("image files: DICOM, PNG or JPEG", files=True)
    output: Path | None = output_field("where to write images the pipeline draws (Grad-CAM overlays): a .png "
                                       "file for one input, or a folder; default <name>.gradcam.png here")
