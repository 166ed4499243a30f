"""Image classification end to end: labelled images -> CNN -> accuracy, confusion matrix, errors grid."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from deepsuite.common import reports
from deepsuite.common.data import labeled_images
from deepsuite.common.data.images import read_image
from deepsuite.common.errors import DataError
from deepsuite.common.metrics import classification_metrics
from deepsuite.common.pipeline import DatasetInfo, Evaluation, Pipeline, Split, Splits, to_numpy
from deepsuite.common.training import optimizer, steps_per_epoch
from deepsuite.pipelines.image_classification import config as cfg


class ImageClassificationPipeline(Pipeline):
    description = "CNN image classifier (raw uint8 images in, class probabilities out)"
    config_cls = cfg.ImageClassificationConfig
    presets = cfg.PRESETS
    default_dataset = "Fashion-MNIST (Debian dataset-fashion-mnist, else Keras download)"
    monitor = "val_accuracy"
    monitor_mode = "max"

    def load_data(self, config: cfg.ImageClassificationConfig) -> Splits:
        data = config.data
        images = labeled_images.load(data.source, data.image_size, data.channels, data.cache_dir,
                                     data.tfds_data_dir, data.download)
        keep, held = labeled_images.stratified_split(images.train_y, data.val_fraction, config.seed)
        if data.max_train_samples:
            keep = keep[: data.max_train_samples]
            held = held[: max(10, int(data.max_train_samples * data.val_fraction))]
        test_x, test_y = images.test_x, images.test_y
        if data.max_test_samples:
            test_x, test_y = test_x[: data.max_test_samples], test_y[: data.max_test_samples]
        info = DatasetInfo(name=images.name, source=images.source, digest=images.digest,
                           metadata={"class_names": images.class_names, "input_shape": list(images.train_x.shape[1:])})
        return Splits(Split(images.train_x[keep], images.train_y[keep]), Split(images.train_x[held], images.train_y[held]),
                      Split(test_x, test_y), info)

    def build_model(self, config: cfg.ImageClassificationConfig, splits: Splits):
        from deepsuite.pipelines.image_classification.model import build_cnn

        num_classes = len(splits.info.metadata["class_names"])
        model = build_cnn(tuple(splits.train.x.shape[1:]), num_classes, config.model)
        import keras

        loss = keras.losses.CategoricalCrossentropy(label_smoothing=config.model.label_smoothing) \
            if config.model.label_smoothing else "sparse_categorical_crossentropy"
        steps = steps_per_epoch(len(splits.train), config.train.batch_size)
        model.compile(optimizer=optimizer(config.train, steps), loss=loss, metrics=["accuracy"])
        return model

    def fit_data(self, splits: Splits, config):
        from deepsuite.common.pipeline import FitData

        if config.model.label_smoothing:
            n = len(splits.info.metadata["class_names"])
            onehot = lambda y: np.eye(n, dtype="float32")[y]  # noqa: E731
            return FitData(splits.train.x, onehot(splits.train.y), (splits.val.x, onehot(splits.val.y)))
        return super().fit_data(splits, config)

    def evaluate(self, model, splits: Splits, config) -> Evaluation:
        names = splits.info.metadata["class_names"]
        probs = to_numpy(model.predict(splits.test.x, batch_size=512, verbose=0))
        y_true, y_pred = splits.test.y, probs.argmax(axis=1)
        metrics = classification_metrics(y_true, probs)
        matrix = reports.confusion_matrix(y_true, y_pred, names)
        wrong = np.flatnonzero(y_pred != y_true)
        wrong = wrong[np.argsort(-probs[wrong, y_pred[wrong]])][:32]  # most confident mistakes first
        figures = {"confusion_matrix": reports.confusion_matrix_figure(matrix, names)}
        if len(wrong):
            captions = [f"{names[y_true[i]]} -> {names[y_pred[i]]}\n{probs[i, y_pred[i]]:.2f}" for i in wrong]
            figures["misclassified"] = reports.image_grid(splits.test.x[wrong], captions,
                                                          "Most confident test errors (true -> predicted)")
        per_class = "class,support,accuracy\n" + "".join(
            f"\"{n}\",{matrix[i].sum()},{matrix[i, i] / max(matrix[i].sum(), 1):.4f}\n" for i, n in enumerate(names))
        return Evaluation(metrics, figures, {"per_class_accuracy.csv": per_class},
                          notes=[f"{len(wrong)} most confident errors shown of {int((y_pred != y_true).sum())}"])

    def predict(self, model, inputs: list[str], metadata: Mapping[str, Any], options: Mapping[str, Any]) -> list[dict]:
        names = metadata["class_names"]
        height, width, channels = metadata["input_shape"]
        if not inputs:
            raise DataError("predict needs at least one image file")
        batch = np.stack([read_image(path, channels=channels, size=(height, width)) for path in inputs])
        probs = to_numpy(model.predict(batch, verbose=0))
        top = int(options.get("top", 3))
        results = []
        for path, p in zip(inputs, probs):
            order = np.argsort(-p)[:top]
            results.append({"input": path, "label": names[order[0]], "probability": float(p[order[0]]),
                            "top": {names[i]: round(float(p[i]), 4) for i in order}})
        return results

    def search_space(self, hp, config):
        return cfg.search_space(hp, config)
