"""Binary-classification metrics clinicians ask for, in NumPy (no scikit-learn, no backend).

Scores are the probability of the positive class (disease). The decision threshold is chosen on the
validation split by `choose_threshold` and then applied unchanged to test by `metrics_at`, so the
test figures are what a deployed model with a fixed operating point would score.
"""
from __future__ import annotations

import numpy as np

THRESHOLD_POLICIES = ("youden", "sensitivity", "specificity", "fixed")


def _check(y_true, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).astype(np.int64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels {y.shape} and scores {s.shape} differ in length")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"binary labels must be 0 or 1, got {sorted(set(np.unique(y).tolist()))}")
    return y, s


def roc_curve(y_true, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false-positive rate, true-positive rate, thresholds), thresholds descending; starts at (0, 0, inf).

    A threshold t predicts positive when score >= t; tied scores move together, as in scikit-learn.
    """
    y, s = _check(y_true, scores)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(y)[last_of_tie]
    fps = (last_of_tie + 1) - tps
    positives, negatives = max(int(y.sum()), 1), max(int(len(y) - y.sum()), 1)
    return (np.r_[0.0, fps / negatives], np.r_[0.0, tps / positives], np.r_[np.inf, s[last_of_tie]])


def roc_auc(y_true, scores) -> float:
    """Area under the ROC curve (Mann-Whitney: ties count half); NaN when one class is absent."""
    y, s = _check(y_true, scores)
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(s)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_values)) + 1]
    ends = np.r_[starts[1:], len(values)]
    ranks = np.empty(len(values))
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = (start + end + 1) / 2  # 1-based average rank of the tie group
    return ranks


def precision_recall_curve(y_true, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, thresholds) for descending thresholds."""
    y, s = _check(y_true, scores)
    fpr, tpr, thresholds = roc_curve(y, s)
    positives, negatives = int(y.sum()), int(len(y) - y.sum())
    tp, fp = tpr[1:] * positives, fpr[1:] * negatives
    precision = tp / np.maximum(tp + fp, 1e-12)
    return precision, tpr[1:], thresholds[1:]


def average_precision(y_true, scores) -> float:
    """Area under the precision-recall curve as a step sum (scikit-learn's definition)."""
    precision, recall, _ = precision_recall_curve(y_true, scores)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def metrics_at(y_true, scores, threshold: float) -> dict[str, float]:
    """accuracy, sensitivity (recall of disease), specificity, precision (PPV), NPV, F1 at `threshold`."""
    y, s = _check(y_true, scores)
    predicted = s >= threshold
    tp = int(np.sum(predicted & (y == 1)))
    tn = int(np.sum(~predicted & (y == 0)))
    fp = int(np.sum(predicted & (y == 0)))
    fn = int(np.sum(~predicted & (y == 1)))
    ratio = (lambda a, b: a / b if b else 0.0)
    sensitivity, precision = ratio(tp, tp + fn), ratio(tp, tp + fp)
    return {
        "accuracy": ratio(tp + tn, len(y)),
        "sensitivity": sensitivity,
        "specificity": ratio(tn, tn + fp),
        "precision": precision,
        "npv": ratio(tn, tn + fn),
        "f1": ratio(2 * precision * sensitivity, precision + sensitivity),
        "balanced_accuracy": (sensitivity + ratio(tn, tn + fp)) / 2,
        "tp": tp, "tn": tn, "fp": fp, "fn": fn,
    }


def choose_threshold(y_true, scores, policy: str = "youden", target: float | None = None) -> float:
    """The operating point, chosen on validation data.

    youden:      maximise sensitivity + specificity - 1 (ties: the threshold in the middle of the best run)
    sensitivity: the highest threshold whose sensitivity is >= target (most specific at that sensitivity)
    specificity: the lowest threshold whose specificity is >= target (most sensitive at that specificity)
    fixed:       `target` itself (e.g. 0.5)
    """
    if policy not in THRESHOLD_POLICIES:
        raise ValueError(f"unknown threshold policy {policy!r} (valid: {', '.join(THRESHOLD_POLICIES)})")
    if policy == "fixed":
        return float(0.5 if target is None else target)
    y, s = _check(y_true, scores)
    fpr, tpr, thresholds = roc_curve(y, s)
    finite = np.isfinite(thresholds)
    fpr, tpr, thresholds = fpr[finite], tpr[finite], thresholds[finite]
    if policy == "youden":
        j = tpr - fpr
        best = np.flatnonzero(np.isclose(j, j.max()))
        # thresholds with equal J form a run of the curve; its middle is the least fragile choice
        low, high = thresholds[best].min(), thresholds[best].max()
        index = int(best[np.argmin(np.abs(thresholds[best] - (low + high) / 2))])
        return float(_midpoint(s, thresholds[index]))
    if target is None or not 0 < target <= 1:
        raise ValueError(f"policy {policy!r} needs a target in (0, 1], got {target!r}")
    if policy == "sensitivity":
        index = int(np.flatnonzero(tpr >= target - 1e-12)[0])
    else:
        index = int(np.flatnonzero(1 - fpr >= target - 1e-12)[-1])
    return float(_midpoint(s, thresholds[index]))


def _midpoint(scores: np.ndarray, threshold: float) -> float:
    """Halfway between `threshold` and the next lower score: the same split of validation, less brittle."""
    below = scores[scores < threshold]
    return (threshold + below.max()) / 2 if below.size else threshold


def calibration_bins(y_true, scores, bins: int = 10) -> dict[str, np.ndarray | float]:
    """Reliability diagram data: per equal-width bin the mean score, the observed rate and the count; plus ECE."""
    y, s = _check(y_true, scores)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(s, edges[1:-1]), 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    mean_score = np.bincount(which, weights=s, minlength=bins) / np.maximum(count, 1)
    observed = np.bincount(which, weights=y, minlength=bins) / np.maximum(count, 1)
    ece = float(np.sum(count * np.abs(mean_score - observed)) / max(len(y), 1))
    return {"mean_score": mean_score, "observed": observed, "count": count, "ece": ece}


def brier_score(y_true, scores) -> float:
    y, s = _check(y_true, scores)
    return float(np.mean((s - y) ** 2))


def log_loss(y_true, scores, eps: float = 1e-7) -> float:
    """Binary cross-entropy of the scores: ranks recipes whose ROC-AUC saturates (a proper scoring rule)."""
    y, s = _check(y_true, scores)
    s = np.clip(s, eps, 1 - eps)
    return float(-np.mean(y * np.log(s) + (1 - y) * np.log(1 - s)))
