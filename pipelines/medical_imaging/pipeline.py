"""Medical imaging end to end: X-rays (MedMNIST, Kermany folders, DICOM) -> CNN -> clinical metrics.

The decision threshold of a binary task is chosen on validation and applied unchanged to test and by
`deepsuite predict` (evaluation.py); predict draws a Grad-CAM overlay per image (inference.py).
"""
from __future__ import annotations

from deepsuite.common.commands import Command
from deepsuite.common.pipeline import Pipeline, Reference
from deepsuite.pipelines.medical_imaging import data, evaluation, inference
from deepsuite.pipelines.medical_imaging.config import PRESETS, MedicalImagingConfig, search_space
from deepsuite.pipelines.medical_imaging.contract import MedicalImagingMetadata, PredictOptions


class MedicalImagingPipeline(Pipeline):
    description = "chest X-ray pneumonia CNN with ROC-AUC, sensitivity/specificity and Grad-CAM (raw pixels in)"
    config_cls = MedicalImagingConfig
    metadata_cls = MedicalImagingMetadata
    presets = PRESETS
    default_dataset = "PneumoniaMNIST (MedMNIST v2 .npz: data cache or data.path, else Zenodo download)"
    monitor = "val_loss"
    monitor_mode = "min"
    references = tuple(
        Reference(metric, quoted, "python bench/medical_imaging.py --set seed=42: default preset, PneumoniaMNIST's "
                  "624-image test split, 2-core CPU, 2026-12-03", "pneumoniamnist")
        for metric, quoted in (("test_roc_auc", "0.9755"), ("test_accuracy", "0.929"), ("test_specificity", "0.842")))
    commands = (
        Command("predict", "label X-rays (DICOM, PNG, JPEG) at the exported threshold, with Grad-CAM",
                PredictOptions, "predict", writes="on_request",
                example={"inputs": ["/path/to/xray.dcm"], "output": True}),
    )

    def load_data(self, config):
        return data.load_data(config)

    def build_model(self, config, splits):
        from deepsuite.pipelines.medical_imaging.model import build_model  # Keras loads when training

        return build_model(config, splits)

    def fit_data(self, splits, config):
        return data.fit_data(splits, config)

    def input_example(self, splits):
        return data.input_example(splits)

    def search_space(self, hp, config):
        return search_space(hp, config)

    def evaluate(self, model, splits, config):
        return evaluation.evaluate(model, splits, config)

    def export_extras(self, model, splits, config, export_dir):
        evaluation.write_extras(splits, export_dir)

    def predict(self, model, export, options):
        return inference.predict(model, export, options)
