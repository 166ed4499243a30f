"""Test metrics and report pieces: accuracy, ROC-AUC, F1, confusion matrix, ROC curve, the most confident errors."""
from __future__ import annotations

import csv
import html
import io

import numpy as np

from deepsuite.common import reports
from deepsuite.common.metrics_binary import log_loss, metrics_at, roc_auc  # one implementation for every binary pipeline
from deepsuite.common.pipeline import Evaluation, Splits, to_numpy
from deepsuite.pipelines.sentiment_analysis.config import SentimentAnalysisConfig
from deepsuite.pipelines.sentiment_analysis.data import texts_of


def evaluate(model, splits: Splits, config: SentimentAnalysisConfig) -> Evaluation:
    """Metrics on the test split, the two figures, the errors table and the data card as report notes."""
    from deepsuite.pipelines.sentiment_analysis.streaming import prediction_input  # Keras: loaded when evaluating

    meta = splits.metadata
    names = meta.class_names
    x, options = prediction_input(splits.test.x, meta)   # streamed texts: in-order batches read from disk
    p = to_numpy(model.predict(x, verbose=0, **options)).reshape(-1)
    y = np.asarray(splits.test.y, dtype=np.int64)
    metrics = binary_metrics(y, p)
    matrix = reports.confusion_matrix(y, (p >= 0.5).astype(int), names)
    figures = {"confusion_matrix": reports.confusion_matrix_figure(matrix, names),
               "roc_curve": reports.roc_figure({"test": (y, p)}, positive=names[1], note="ROC curve (test)")}
    errors = confident_errors(texts_of(splits.test), y, p, names)
    tables = {"most_confident_errors.csv": errors_csv(errors), "most_confident_errors.html": errors_html(errors)}
    takes = "raw strings" if meta.model_input == "text" else \
        f"token ids of shape (batch, {meta.sequence_length}), vocabulary in vocabulary.txt"
    notes = [*meta.data_card, f"exported model input: {takes}",
             f"{len(errors)} most confident of {int(((p >= 0.5) != y).sum())} test errors in "
             "tables/most_confident_errors.{csv,html}"]
    return Evaluation(metrics, figures, tables, notes)


def binary_metrics(y_true: np.ndarray, p_positive: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """The shared confusion-matrix figures (deepsuite.common.metrics_binary) in sentiment's terms, plus macro F1
    (positive and negative class alike) and log loss."""
    at = metrics_at(y_true, p_positive, threshold)
    negative_f1 = at["npv"] * at["specificity"] * 2 / (at["npv"] + at["specificity"]) \
        if at["npv"] + at["specificity"] else 0.0
    return {
        "accuracy": float(at["accuracy"]),
        "roc_auc": roc_auc(y_true, p_positive),
        "f1": float(at["f1"]),
        "macro_f1": float((at["f1"] + negative_f1) / 2),
        "precision": float(at["precision"]),
        "recall": float(at["sensitivity"]),
        "log_loss": log_loss(y_true, p_positive),
    }


def confident_errors(texts, y_true: np.ndarray, p_positive: np.ndarray, class_names: list[str],
                     limit: int = 50) -> list[dict]:
    """Wrong predictions, most confident first: the texts most worth reading when judging a model. `texts` is
    indexed only at the rows shown (a streamed split reads those `limit` texts from disk)."""
    y_pred = (p_positive >= 0.5).astype(int)
    confidence = np.where(y_pred == 1, p_positive, 1 - p_positive)
    wrong = np.flatnonzero(y_pred != np.asarray(y_true))
    wrong = wrong[np.argsort(-confidence[wrong], kind="mergesort")][:limit]
    return [{"rank": k + 1, "true": class_names[int(y_true[i])], "predicted": class_names[int(y_pred[i])],
             "confidence": round(float(confidence[i]), 4), "text": texts[i]} for k, i in enumerate(wrong)]


def errors_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["rank", "true", "predicted", "confidence", "text"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def errors_html(rows: list[dict]) -> str:
    body = "".join(f"<tr><td>{r['rank']}</td><td>{r['true']}</td><td>{r['predicted']}</td>"
                   f"<td>{r['confidence']:.3f}</td><td>{html.escape(r['text'])}</td></tr>" for r in rows)
    return ("<!doctype html><html><head><meta charset='utf-8'><title>Most confident errors</title></head>"
            "<body style='font-family:sans-serif'><h1>Most confident test errors</h1>"
            "<table border=1 cellpadding=4><tr><th>#</th><th>true</th><th>predicted</th><th>confidence</th>"
            f"<th>text</th></tr>{body}</table></body></html>")
