"""Medical imaging end to end: X-rays (MedMNIST, Kermany folders, DICOM) -> CNN -> clinical metrics.

For a binary task the decision threshold is chosen on the validation split (Youden's J, or a target
sensitivity/specificity) and then applied unchanged to test, so the reported sensitivity and
specificity are those of a fixed operating point, as in a deployed device. The threshold travels
with the exported model (deepsuite.json) so `deepsuite predict` uses the same one.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from deepsuite.common.errors import ConfigError, DataError
from deepsuite.common.pipeline import DatasetInfo, Evaluation, FitData, Pipeline, Split, Splits, to_numpy
from deepsuite.common.training import optimizer, steps_per_epoch
from deepsuite.pipelines.medical_imaging import config as cfg
from deepsuite.pipelines.medical_imaging import data as medical_data


class MedicalImagingPipeline(Pipeline):
    description = "chest X-ray pneumonia CNN with ROC-AUC, sensitivity/specificity and Grad-CAM (raw pixels in)"
    config_cls = cfg.MedicalImagingConfig
    presets = cfg.PRESETS
    default_dataset = "PneumoniaMNIST (MedMNIST v2 .npz: data cache or data.path, else Zenodo download)"
    monitor = "val_loss"
    monitor_mode = "min"

    # -- data ------------------------------------------------------------------------------------

    def load_data(self, config: cfg.MedicalImagingConfig) -> Splits:
        data = config.data
        images = medical_data.load(data, config.seed)
        names = images.class_names
        positive = positive_index(names, data.positive_class)
        rng = np.random.default_rng(config.seed)
        split = {}
        for name in medical_data.SPLITS:
            x, y = images.images[name], images.labels[name]
            limit = {"train": data.max_train_samples, "val": data.max_val_samples, "test": data.max_test_samples}[name]
            if limit and limit < len(y):
                keep = np.sort(rng.permutation(len(y))[:limit])
                x, y = x[keep], y[keep]
            split[name] = Split(x, y)
        if len(np.unique(split["train"].y)) < 2:
            raise DataError(f"{images.source}: the training split has only one class; need at least 2")
        metadata = {"class_names": names, "input_shape": list(split["train"].x.shape[1:]), "positive_index": positive,
                    "split": images.split_note}
        if images.leakage:
            metadata["patient_split"] = {k: v for k, v in images.leakage.items() if k != "examples"}
        info = DatasetInfo(name=images.name, source=images.source, digest=images.digest, metadata=metadata)
        return Splits(split["train"], split["val"], split["test"], info)

    # -- model -----------------------------------------------------------------------------------

    def build_model(self, config: cfg.MedicalImagingConfig, splits: Splits):
        import keras

        from deepsuite.pipelines.medical_imaging.model import build_model

        num_classes = len(splits.info.metadata["class_names"])
        model = build_model(tuple(splits.train.x.shape[1:]), num_classes, config.model)
        steps = steps_per_epoch(len(splits.train), config.train.batch_size)
        opt = optimizer(config.train, steps)
        if config.train.ema_momentum:
            # Keras averages the weights after every step and copies the average into the model when fit ends
            opt = type(opt).from_config({**opt.get_config(), "use_ema": True,
                                         "ema_momentum": config.train.ema_momentum})
        if config.model.ensemble_members > 1:
            # the training output holds every member's probabilities: each member is scored on its own
            from deepsuite.pipelines.medical_imaging.model import EnsembleCrossentropy, ensemble_accuracy

            loss = EnsembleCrossentropy(label_smoothing=config.model.label_smoothing)
            metrics = [keras.metrics.MeanMetricWrapper(ensemble_accuracy, name="accuracy")]
        else:
            loss = keras.losses.CategoricalCrossentropy(label_smoothing=config.model.label_smoothing)
            metrics = ["accuracy"]
        model.compile(optimizer=opt, loss=loss, metrics=metrics)
        return model

    def fit_data(self, splits: Splits, config: cfg.MedicalImagingConfig) -> FitData:
        n = len(splits.info.metadata["class_names"])
        onehot = np.eye(n, dtype="float32")
        weights = class_weights(splits.train.y, n, config.model.class_weight)
        validation = (splits.val.x, onehot[splits.val.y])
        if config.model.mixup > 0:
            from deepsuite.pipelines.medical_imaging.data import MixupBatches

            batches = MixupBatches(splits.train.x, splits.train.y, n, config.train.batch_size, config.model.mixup,
                                   weights, config.seed)
            return FitData(batches, validation_data=validation)
        return FitData(splits.train.x, onehot[splits.train.y], validation, class_weight=weights)

    def search_space(self, hp, config):
        return cfg.search_space(hp, config)

    # -- evaluation ------------------------------------------------------------------------------

    def evaluate(self, model, splits: Splits, config: cfg.MedicalImagingConfig) -> Evaluation:
        from deepsuite.pipelines.medical_imaging.report import evaluate_binary, evaluate_multiclass

        meta = splits.info.metadata
        val_probs = to_numpy(model.predict(splits.val.x, batch_size=512, verbose=0))
        test_probs = to_numpy(model.predict(splits.test.x, batch_size=512, verbose=0))
        if len(meta["class_names"]) == 2:
            evaluation, decision = evaluate_binary(model, splits, val_probs, test_probs, config.evaluation)
            meta["decision"] = decision  # exported in deepsuite.json: predict applies the same threshold
        else:
            evaluation = evaluate_multiclass(model, splits, test_probs, config.evaluation)
        evaluation.notes.insert(0, f"splits: {meta['split']}")
        leakage = meta.get("patient_split")
        if leakage and leakage.get("known"):
            evaluation.metrics["split_shared_patients"] = float(leakage["shared_patients"])
        return evaluation

    # -- inference -------------------------------------------------------------------------------

    def predict(self, model, inputs: list[str], metadata: Mapping[str, Any], options: Mapping[str, Any]) -> list[dict]:
        from deepsuite.pipelines.medical_imaging.inference import predict_files

        return predict_files(model, inputs, metadata, options)


def positive_index(class_names: list[str], positive: str | None) -> int | None:
    """Index of the disease class of a binary task (default 1); None for multi-class."""
    if len(class_names) != 2:
        return None
    if positive is None:
        return 1
    lowered = [n.lower() for n in class_names]
    if positive.lower() in lowered:
        return lowered.index(positive.lower())
    if positive in ("0", "1"):
        return int(positive)
    raise ConfigError(f"data.positive_class {positive!r} is not one of the classes {class_names}")


def class_weights(y: np.ndarray, num_classes: int, policy: str) -> dict[int, float] | None:
    """balanced: N / (K * n_c), so every class carries the same total weight; sqrt: a milder version."""
    if policy == "none":
        return None
    counts = np.bincount(y, minlength=num_classes).astype(float)
    weights = len(y) / (num_classes * np.maximum(counts, 1))
    if policy == "sqrt":
        weights = np.sqrt(weights)
    return {c: float(w) for c, w in enumerate(weights)}
