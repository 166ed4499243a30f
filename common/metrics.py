"""Metrics Keras lacks or that must be computed on the whole test set at once (NumPy, backend-free)."""
from __future__ import annotations

import numpy as np


def classification_metrics(y_true: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """accuracy, top-2 accuracy, macro precision/recall/F1, log loss for integer labels and class probabilities."""
    y_true = np.asarray(y_true, dtype=np.int64)
    n_classes = probs.shape[1]
    y_pred = probs.argmax(axis=1)
    precision, recall, f1 = [], [], []
    for c in range(n_classes):
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        precision.append(p)
        recall.append(r)
        f1.append(2 * p * r / (p + r) if p + r else 0.0)
    top2 = np.argsort(-probs, axis=1)[:, :2]
    eps = 1e-7
    return {
        "accuracy": float(np.mean(y_pred == y_true)),
        "top2_accuracy": float(np.mean((top2 == y_true[:, None]).any(axis=1))),
        "macro_precision": float(np.mean(precision)),
        "macro_recall": float(np.mean(recall)),
        "macro_f1": float(np.mean(f1)),
        "log_loss": float(-np.mean(np.log(np.clip(probs[np.arange(len(y_true)), y_true], eps, 1)))),
    }
