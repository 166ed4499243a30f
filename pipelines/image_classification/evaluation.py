"""Test accuracy and friends, the confusion matrix, the most confident errors and per-class accuracy."""
from __future__ import annotations

import numpy as np

from deepsuite.common import reports
from deepsuite.common.metrics import classification_metrics
from deepsuite.common.pipeline import Evaluation, Splits, to_numpy
from deepsuite.pipelines.image_classification.config import ImageClassificationConfig

ERRORS_SHOWN = 32


def evaluate(model, splits: Splits, config: ImageClassificationConfig) -> Evaluation:
    names = splits.metadata.class_names
    from deepsuite.common.image_batches import prediction_input  # Keras is loaded by now

    # arrays in batches of 512; a streamed test split as in-order batches of 64 decoded by the workers
    test_x, options = prediction_input(splits.test.x, 512, config.data.stream_workers, streamed_batch=64)
    probs = to_numpy(model.predict(test_x, verbose=0, **options))
    y_true, y_pred = splits.test.y, probs.argmax(axis=1)
    metrics = classification_metrics(y_true, probs)
    matrix = reports.confusion_matrix(y_true, y_pred, names)
    wrong = np.flatnonzero(y_pred != y_true)
    wrong = wrong[np.argsort(-probs[wrong, y_pred[wrong]])][:ERRORS_SHOWN]  # most confident mistakes first
    figures = {"confusion_matrix": reports.confusion_matrix_figure(matrix, names)}
    if len(wrong):
        captions = [f"{names[y_true[i]]} -> {names[y_pred[i]]}\n{probs[i, y_pred[i]]:.2f}" for i in wrong]
        figures["misclassified"] = reports.image_grid(np.asarray(splits.test.x[wrong]), captions,
                                                      "Most confident test errors (true -> predicted)")
    per_class = "class,support,accuracy\n" + "".join(
        f"\"{n}\",{matrix[i].sum()},{matrix[i, i] / max(matrix[i].sum(), 1):.4f}\n" for i, n in enumerate(names))
    return Evaluation(metrics, figures, {"per_class_accuracy.csv": per_class},
                      notes=[f"{len(wrong)} most confident errors shown of {int((y_pred != y_true).sum())}"])
