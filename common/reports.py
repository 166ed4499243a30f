"""Figures and the HTML report: what people would rather look at than read.

matplotlib with the Agg backend (no display needed); every figure is returned for the tracker to log
under `plots/<name>.png`, so the MLflow compare view finds the same names in every run.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from deepsuite.common.pipeline import Reference


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend: reports are drawn on machines without a display."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def roc_figure(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], positive: str = "positive",
               threshold: float | None = None, note: str = ""):
    """ROC curves of a binary classifier, one per split name -> (y, scores), with each AUC in the legend;
    with `threshold`, a dot marks the operating point on each curve."""
    from deepsuite.common import metrics_binary as mb

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, (y, scores) in curves.items():
        fpr, tpr, _ = mb.roc_curve(y, scores)
        line, = ax.plot(fpr, tpr, label=f"{name} (AUC {mb.roc_auc(y, scores):.3f})")
        if threshold is not None:
            point = mb.metrics_at(y, scores, threshold)
            ax.plot(1 - point["specificity"], point["sensitivity"], "o", color=line.get_color())
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set_xlabel("1 - specificity (false-positive rate)")
    ax.set_ylabel(f"sensitivity (recall of {positive})")
    ax.set_title(note or ("ROC" if threshold is None else f"ROC; dots: threshold {threshold:.3f}"))
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def learning_curves(history: Mapping[str, Sequence[float]]):
    """One panel per metric, train and validation together."""
    plt = pyplot()
    bases = [k for k in history if not k.startswith("val_") and k != "learning_rate"]
    fig, axes = plt.subplots(1, max(len(bases), 1), figsize=(4.5 * max(len(bases), 1), 3.5), squeeze=False)
    for ax, base in zip(axes[0], bases):
        epochs = np.arange(1, len(history[base]) + 1)
        ax.plot(epochs, history[base], marker="o", label="train")
        if f"val_{base}" in history:
            ax.plot(epochs, history[f"val_{base}"], marker="o", label="validation")
        ax.set_title(base)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    n = len(class_names)
    matrix = np.zeros((n, n), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return matrix


def confusion_matrix_figure(matrix: np.ndarray, class_names: Sequence[str], title: str = "Confusion matrix (test)"):
    plt = pyplot()
    n = len(class_names)
    size = max(4.0, 0.6 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def image_grid(images: np.ndarray, captions: Sequence[str], title: str, columns: int = 8):
    """A grid of HxWxC uint8 (or float 0..1) images with a caption under each."""
    plt = pyplot()
    count = len(images)
    rows = max(1, int(np.ceil(count / columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.9 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < count:
            image = images[k]
            grey = image.ndim == 2 or image.shape[-1] == 1
            ax.imshow(image.squeeze(-1) if image.ndim == 3 and grey else image, cmap="gray" if grey else None)
            ax.set_title(captions[k], fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def html_report(title: str, metrics: Mapping[str, float], config_yaml: str, figures: Sequence[str],
                tables: Mapping[str, str], notes: Sequence[str] = (), facts: Sequence[tuple[str, str]] = (),
                references: Sequence[Reference] = ()) -> str:
    """A single-page report that opens from the artifacts folder (figures by relative path); `facts` are
    the run's (name, value) lines: data, digest, training time, hardware; `references` the figures the
    pipeline's README quotes for the same data (`Pipeline.references_for`), shown beside the run's own."""
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.4f}</td></tr>" for k, v in sorted(metrics.items()))
    reference_rows = "".join(
        f"<tr><td>{html.escape(r.metric)}</td><td>{_value(metrics.get(r.metric))}</td>"
        f"<td>{html.escape(r.quoted)}</td><td>{html.escape(r.measured)}</td></tr>" for r in references)
    reference_section = ("<h2>Reference figures</h2><p>What the pipeline's README quotes for the same data, "
                         "beside this run's figure (a smoke or changed run is not expected to reach them).</p>"
                         "<table border=1 cellpadding=4><tr><th>metric</th><th>this run</th><th>README</th>"
                         f"<th>measured</th></tr>{reference_rows}</table>") if references else ""
    images = "".join(f'<figure><img src="{html.escape(f)}" style="max-width:100%"><figcaption>{html.escape(f)}'
                     "</figcaption></figure>" for f in figures)
    table_links = "".join(f'<li><a href="{html.escape(name)}">{html.escape(name)}</a></li>' for name in tables)
    note_items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    fact_rows = "".join(f"<tr><th align=left>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts)
    run_section = f"<h2>Run</h2><table border=1 cellpadding=4>{fact_rows}</table>" if facts else ""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
            f"<body style='font-family:sans-serif;max-width:1100px;margin:auto'><h1>{html.escape(title)}</h1>"
            f"<ul>{note_items}</ul><h2>Test metrics</h2><table border=1 cellpadding=4>{rows}</table>"
            f"{reference_section}{run_section}"
            f"<h2>Figures</h2>{images}<h2>Tables</h2><ul>{table_links}</ul>"
            f"<h2>Resolved config</h2><pre>{html.escape(config_yaml)}</pre></body></html>")


def _value(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def save_figure(figure: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path


def close(figure: Any) -> None:
    pyplot().close(figure)
