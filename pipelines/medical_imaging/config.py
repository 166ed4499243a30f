"""Config, presets and search space of the medical-imaging pipeline."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from deepsuite.common.config import RunConfig, Section, TrainConfig, recipe_default

# Kermany et al. file names: IM-0115-0001.jpeg, NORMAL2-IM-1427-0001.jpeg, person1_bacteria_1.jpeg
KERMANY_PATIENT_PATTERN = r"^(NORMAL2-IM-\d+|IM-\d+|person\d+)"


class DataConfig(Section):
    source: str = Field("pneumoniamnist", description="pneumoniamnist | <MedMNIST 2D flag, e.g. bloodmnist_64> | "
                                                       "medmnist:<file.npz> | folder:<path> (Kermany layout)")
    path: str | None = Field(None, description="a MedMNIST .npz file, or a folder searched first for <flag>.npz")
    download: bool = Field(True, description="download named MedMNIST sets from Zenodo when not found locally")
    cache_dir: str | None = None
    image_size: tuple[int, int] | None = Field(None, description="stored size (h, w) for folder/DICOM sources; "
                                                                 "default 64x64; MedMNIST keeps its own size")
    channels: Literal[1, 3] | None = Field(None, description="grey (1) or RGB (3); default: as stored, folders grey")
    positive_class: str | None = Field(None, description="the disease class for sensitivity/ROC in binary tasks; "
                                                         "default: class 1 (e.g. pneumonia)")
    val_fraction: float = Field(0.1, gt=0, lt=0.5, description="validation share carved from train when needed")
    test_fraction: float = Field(0.2, gt=0, lt=0.5, description="test share of a folder without train/test")
    min_val_per_class: int = Field(20, ge=1, description="a val/ folder with fewer images per class is merged "
                                                         "into train and validation is re-split by patient")
    patients_csv: str | None = Field(None, description="CSV with columns path,patient_id for a folder source")
    patient_pattern: str | None = Field(KERMANY_PATIENT_PATTERN, description="regex whose first group is the "
                                                                             "patient id in a file name")
    max_train_samples: int | None = Field(None, ge=10, description="subsample train (smoke tests)")
    max_val_samples: int | None = Field(None, ge=10)
    max_test_samples: int | None = Field(None, ge=10)
    stream: bool | None = Field(None, description="folder sources: decode images per batch from disk (bounded "
                                                  "memory) instead of loading arrays; unset: stream when the "
                                                  "decoded images would take over 25% of the available memory")
    stream_workers: int | None = Field(None, ge=1, le=64, description="threads decoding streamed batches; "
                                                                      "default: CPU cores, at most 8")


class ModelConfig(Section):
    kind: Literal["cnn"] = "cnn"
    input_size: tuple[int, int] | None = Field(None, description="resize inside the model to (h, w), e.g. 56x56")
    min_input_side: int | None = Field(None, ge=8, description="without input_size: enlarge images whose shorter "
                                                               "side is below this (aspect kept) inside the model, "
                                                               "so 3x3 convolutions see finer steps of a tiny "
                                                               "image; larger images pass unchanged")
    widths: list[int] = Field([24, 48, 96], min_length=1, max_length=6, description="filters per stage")
    blocks_per_stage: int = Field(2, ge=1, le=4)
    dropout: float = Field(0.3, ge=0, lt=1)
    bn_momentum: float = Field(0.99, gt=0, lt=1, description="BatchNorm moving-average momentum; lower for "
                                                            "runs of a few dozen steps")
    class_weight: Literal["balanced", "sqrt", "none"] = Field(
        "balanced", description="loss weight per class: balanced = N / (K * n_c); sqrt = its square root")
    label_smoothing: float = Field(0.1, ge=0, lt=0.5, description="softer targets: less over-confident scores")
    augment: bool = Field(True, description="X-ray-suited augmentation during training (never vertical flips)")
    horizontal_flip: bool = True
    translate: float = Field(0.1, ge=0, le=0.5, description="max shift as a fraction of the size")
    rotation_degrees: float = Field(10.0, ge=0, le=45)
    zoom: float = Field(0.1, ge=0, lt=0.5)
    contrast: float = Field(0.4, ge=0, lt=1, description="random contrast factor (exposure differences)")
    brightness: float = Field(0.2, ge=0, lt=1)
    mixup: float = Field(0.0, ge=0, le=1, description="mixup Beta(a, a) parameter: train on blends of two images "
                                                      "and their labels; 0 disables")
    tta_flip: bool = Field(True, description="average the prediction with the left-right mirrored image "
                                             "(inside the model, so the exported model does it too)")
    tta_train_mirror: bool = Field(False, description="with tta_flip, also train through the mirrored branch "
                                                      "(twice the training compute); off: the mirror is "
                                                      "averaged in at inference only")
    ensemble_members: int = Field(1, ge=1, le=5, description="CNNs in one exported model, each with its own random "
                                                            "initialisation and augmentation draws, trained "
                                                            "side by side on their own losses in the same fit "
                                                            "(M times the training compute) and averaged at "
                                                            "inference; Grad-CAM is the members' mean map")

    @model_validator(mode="after")
    def _ensemble_mirror(self):
        if self.ensemble_members > 1 and self.tta_flip and self.tta_train_mirror:
            raise ValueError("tta_train_mirror is not available with ensemble_members > 1 (an ensemble averages "
                             "the mirrored image in at inference only)")
        return self


class EvaluationConfig(Section):
    threshold_policy: Literal["youden", "sensitivity", "specificity", "fixed"] = Field(
        "sensitivity", description="how the decision threshold is chosen on VALIDATION, then applied to test: "
                                   "youden = max sensitivity + specificity; sensitivity/specificity = the "
                                   "best threshold that reaches threshold_target; fixed = threshold_target")
    threshold_target: float | None = Field(0.95, gt=0, le=1, description="target sensitivity/specificity, or "
                                                                         "the fixed threshold")
    gradcam_examples: int = Field(8, ge=0, le=32, description="Grad-CAM overlays per group (correct, wrong)")
    calibration_bins: int = Field(10, ge=2, le=50)


class DomainConfig(Section):
    """The inputs the model is meant for; recorded in the export, checked by predict and serve."""

    modalities: list[str] = Field(["CR", "DX"], description="DICOM Modality values the model is meant for "
                                                           "(CR, DX: radiographs); a DICOM stating another is "
                                                           "warned about or refused (policy); [] = not checked")
    body_parts: list[str] = Field(["CHEST"], description="DICOM BodyPartExamined values the model is meant for; "
                                                        "a DICOM stating another is warned about or refused, one "
                                                        "that omits it (many chest radiographs do) is not; "
                                                        "[] = not checked")
    policy: Literal["warn", "refuse"] = Field("warn", description="a DICOM whose header names another modality or "
                                                                 "body part: warn = answer with a warning; "
                                                                 "refuse = fail, no answer, no overlay")
    ood_rate: float = Field(0.05, gt=0, lt=0.5, description="out-of-distribution threshold, chosen on validation: "
                                                            "at most this share of each class's validation "
                                                            "images (so of any mix of them) is flagged")

    @field_validator("modalities", "body_parts")
    @classmethod
    def _dicom_terms(cls, values: list[str]) -> list[str]:
        """DICOM code strings are upper case; 'dx' and ' DX ' mean DX."""
        terms = [v.strip().upper() for v in values]
        if any(not t for t in terms):
            raise ValueError("empty value; use [] to check nothing")
        return terms


class MedicalImagingConfig(RunConfig):
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    domain: DomainConfig = DomainConfig()
    # ~5k small X-rays on a CPU; no early stopping (the cosine schedule runs to the end), training ends on
    # the exponential moving average of the weights (the smoke preset turns it off)
    train: TrainConfig = TrainConfig(epochs=20, batch_size=64, learning_rate=2e-3, early_stopping_patience=0,
                                     ema_momentum=0.99)


PRESETS: dict[str, dict] = {
    # Three CNNs at the data's own 28 px (three stages 24/48/96 each), averaged, threshold at 95 % validation
    # sensitivity: the finalist with the lowest validation log loss (seeds 42 and 2, 2026-12-03; against one
    # such CNN and three 40 px four-stage ones; bench/select_on_validation.py, README). ~370 s of training.
    "default": {"model": {"ensemble_members": 3}},
    "smoke": {
        "data": {"max_train_samples": 600, "max_val_samples": 128, "max_test_samples": 200},
        "model": {"widths": [8, 16], "blocks_per_stage": 1, "tta_flip": False, "bn_momentum": 0.9},
        "evaluation": {"gradcam_examples": 4},
        "train": {"epochs": 2, "batch_size": 64, "verbose": 0, "ema_momentum": 0.0},
    },
    "full": {
        "model": {"input_size": (64, 64), "widths": [48, 96, 192, 256], "blocks_per_stage": 2, "dropout": 0.4},
        "train": {"mixed_precision": True, "epochs": 60, "batch_size": 128, "learning_rate": 3e-3, "warmup_epochs": 2},
    },
}


def search_space(hp, config: MedicalImagingConfig) -> MedicalImagingConfig:
    """The tuner's choices applied to `config`; model.py never sees `hp`."""
    values = config.model_dump()
    model = config.model

    def choice(name, options, current):
        return hp.Choice(f"model.{name}", options, default=recipe_default(current, options))

    base = choice("base_width", [16, 24, 32, 48], model.widths[0])
    stages = hp.Int("model.stages", 2, 4, default=recipe_default(len(model.widths), (2, 4)))
    values["model"]["widths"] = [base * 2**i for i in range(stages)]
    values["model"]["blocks_per_stage"] = hp.Int("model.blocks_per_stage", 1, 3,
                                                 default=recipe_default(model.blocks_per_stage, (1, 3)))
    values["model"]["dropout"] = hp.Float("model.dropout", 0.0, 0.5, step=0.1,
                                          default=recipe_default(model.dropout, (0.0, 0.5)))
    values["model"]["label_smoothing"] = choice("label_smoothing", [0.0, 0.05, 0.1], model.label_smoothing)
    values["model"]["class_weight"] = choice("class_weight", ["balanced", "sqrt", "none"], model.class_weight)
    values["model"]["contrast"] = choice("contrast", [0.0, 0.2, 0.4], model.contrast)
    values["train"]["learning_rate"] = hp.Float("train.learning_rate", 5e-4, 5e-3, sampling="log",
                                                default=recipe_default(config.train.learning_rate, (5e-4, 5e-3)))
    return type(config).model_validate(values)
