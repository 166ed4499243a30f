"""The report's clinical figures: ROC and precision-recall curves with the operating point, and a
reliability (calibration) diagram. Matplotlib Agg, returned as Figures for the runner to log."""
from __future__ import annotations

import numpy as np

from deepsuite.common import metrics_binary as mb
from deepsuite.common.reports import pyplot as _plt


def pr_figure(curves: dict[str, tuple[np.ndarray, np.ndarray]], threshold: float, positive: str):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, (y, scores) in curves.items():
        precision, recall, _ = mb.precision_recall_curve(y, scores)
        point = mb.metrics_at(y, scores, threshold)
        line, = ax.step(recall, precision, where="post",
                        label=f"{name} (AP {mb.average_precision(y, scores):.3f}, prevalence {np.mean(y):.2f})")
        ax.plot(point["sensitivity"], point["precision"], "o", color=line.get_color())
    ax.set_xlabel(f"recall (sensitivity for {positive})")
    ax.set_ylabel("precision (positive predictive value)")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"Precision-recall; dots: threshold {threshold:.3f}")
    ax.legend(loc="lower left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def calibration_figure(y: np.ndarray, scores: np.ndarray, bins: int, positive: str):
    """Reliability diagram (observed rate per predicted-probability bin) over a histogram of scores."""
    plt = _plt()
    table = mb.calibration_bins(y, scores, bins)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5, 6), height_ratios=[3, 1], sharex=True)
    used = table["count"] > 0
    centres = (np.arange(bins) + 0.5) / bins
    top.plot([0, 1], [0, 1], ":", color="grey", label="perfectly calibrated")
    top.plot(table["mean_score"][used], table["observed"][used], "o-", label=f"model (ECE {table['ece']:.3f})")
    top.set_ylabel(f"observed rate of {positive}")
    top.set_title("Calibration on test")
    top.legend(loc="upper left")
    top.grid(alpha=0.3)
    bottom.bar(centres, table["count"], width=1 / bins, edgecolor="white")
    bottom.set_xlabel(f"predicted probability of {positive}")
    bottom.set_ylabel("images")
    fig.tight_layout()
    return fig
