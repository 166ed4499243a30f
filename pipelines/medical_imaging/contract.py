"""What crosses the medical-imaging stages, typed: the export metadata and the predict options."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

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


class ExpectedDomain(BaseModel):
    """What the model is meant to see (config `domain`); predict checks a DICOM's header against it."""

    model_config = ConfigDict(extra="forbid")

    modalities: list[str] = Field(default_factory=list, description="DICOM Modality values; [] = not checked")
    body_parts: list[str] = Field(default_factory=list, description="DICOM BodyPartExamined values; [] = not "
                                                                    "checked; a file that omits it passes")
    policy: Literal["warn", "refuse"] = Field("warn", description="what a mismatch does: warn or refuse")


class OodCheck(BaseModel):
    """The out-of-distribution detector of the export (ood.py): statistics in `file`, threshold chosen on validation."""

    model_config = ConfigDict(extra="forbid")

    method: str = Field(..., description="how the score is computed")
    file: str = Field(..., description="the detector's statistics, beside model.keras")
    threshold: float = Field(..., description="a score above it is out of distribution")
    rate: float = Field(..., description="the target: at most this share of each class's validation images flagged")
    chosen_on: str = Field(..., description="how the threshold was chosen")
    val_flagged: float = Field(..., description="share of validation images above the threshold")
    test_flagged: float | None = Field(None, description="share of test images above the threshold")


class MedicalImagingMetadata(ExportMetadata):
    """What `load_data` (and, for `decision`, `evaluate`) learn that the model and `predict` need."""

    class_names: list[str] = Field(..., description="label of each output, in output order")
    input_shape: tuple[int, int, int] = Field(..., description="(height, width, channels) of the stored images; "
                                                               "predict crops and resizes files to it")
    positive_index: int | None = Field(None, description="the disease class of a binary task; None: multi-class")
    split: str = Field(..., description="how the splits were made, for the report")
    patient_split: PatientSplit | None = Field(None, description="folder sources with patient ids only")
    decision: Decision | None = Field(None, description="binary tasks: set by evaluate once the threshold is chosen")
    domain: ExpectedDomain | None = Field(None, description="set by evaluate from config `domain`; None (exports "
                                                            "before it existed): DICOM headers are not checked")
    ood: OodCheck | None = Field(None, description="set by evaluate; None (exports before it existed): no "
                                                   "out-of-distribution score")
    # the fitted detector, from evaluate to export_extras (which writes ood.file); never serialised
    _detector: Any = PrivateAttr(None)


class PredictOptions(Options):
    inputs: list[str] = inputs_field("image files: DICOM, PNG or JPEG", files=True)
    output: Path | None = output_field("where to write images the pipeline draws (Grad-CAM overlays): a .png "
                                       "file for one input, or a folder; default <name>.gradcam.png here")
