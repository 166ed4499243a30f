"""How raw labels become 0/1 sentiment: the rules (explicit label lists, positive/negative names, 0/1, signed
ratings, 1-5 stars, a threshold), decided on the distinct values and spread to the rows. A label that fits no
rule is an error that lists what was found, never a guess; the rule used is returned as a sentence for the
report and the data card.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from deepsuite.common.errors import DataError

POSITIVE_NAMES = {"pos", "positive", "good"}
NEGATIVE_NAMES = {"neg", "negative", "bad"}


def map_labels(raw: list[str], data, where: str, origin: list[str] | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """Raw label strings -> (0/1 labels, rows to keep, the rule used). Anything unexpected is an error."""
    origin = origin or [f"row {i + 1}" for i in range(len(raw))]
    codes: dict[str, int] = {}
    row_codes = np.array([codes.setdefault(v, len(codes)) for v in raw], dtype=np.int32)
    return map_label_codes(list(codes), row_codes, data, where, origin.__getitem__)


def map_label_codes(values: list[str], codes: np.ndarray, data, where: str, origin: Callable[[int], str]
                    ) -> tuple[np.ndarray, np.ndarray, str]:
    """`map_labels` on labels given as `values[codes[i]]` (each distinct value once, e.g. from a streamed index);
    `origin(i)` names row i. Every rule is decided on the distinct values, then spread to the rows."""
    codes = np.asarray(codes, dtype=np.int64)
    distinct_values = sorted(set(values))
    if data.positive_labels:
        pos, neg = set(data.positive_labels), set(data.negative_labels)
        bad = np.array([v not in pos | neg for v in values], dtype=bool)
        unexpected = np.flatnonzero(bad[codes])
        if len(unexpected):
            found = sorted({values[c] for c in np.unique(codes[unexpected])})
            raise DataError(f"{where}: {len(unexpected)} label(s) in neither data.positive_labels nor "
                            f"data.negative_labels: {_few(found)} (first at {origin(int(unexpected[0]))})")
        labels = np.array([v in pos for v in values], dtype=np.int8)[codes]
        return labels, np.ones(len(codes), bool), f"positive = {sorted(pos)}, negative = {sorted(neg)} ({where})"
    value_numbers = _as_numbers(values)
    if value_numbers is None:
        lower = {v.lower() for v in distinct_values}
        if lower <= POSITIVE_NAMES | NEGATIVE_NAMES and lower & POSITIVE_NAMES and lower & NEGATIVE_NAMES:
            labels = np.array([v.lower() in POSITIVE_NAMES for v in values], dtype=np.int8)[codes]
            return labels, np.ones(len(codes), bool), \
                f"labels named positive/negative ({where}: {', '.join(distinct_values)})"
        raise DataError(f"{where}: label values {_few(distinct_values)} are not numbers or positive/negative names; "
                        "set data.positive_labels and data.negative_labels (e.g. --set 'data.positive_labels=[good]')")
    numbers = value_numbers[codes]
    if np.isnan(numbers).any():
        first = int(np.flatnonzero(np.isnan(numbers))[0])
        raise DataError(f"{where}: missing label at {origin(first)}; fill it in or remove the row")
    threshold = data.label_threshold
    distinct = set(value_numbers.tolist())
    if threshold is None:
        if distinct <= {0.0, 1.0} and len(distinct) == 2:
            threshold, why = 0.5, "0 = negative, 1 = positive"
        elif numbers.min() < 0 < numbers.max():
            threshold, why = 0.0, "signed ratings: sign of the rating"
        elif distinct <= {1.0, 2.0, 3.0, 4.0, 5.0} and min(distinct) <= 2 and max(distinct) >= 4:
            threshold, why = 3.0, "1-5 stars: 1-2 negative, 4-5 positive"
        else:
            raise DataError(f"{where}: numeric labels {_few(sorted(distinct))} fit no known scale; set "
                            "data.label_threshold (above = positive, below = negative, equal = dropped)")
    else:
        why = f"data.label_threshold = {threshold:g}"
    keep = numbers != threshold
    labels = (numbers > threshold).astype(np.int8)
    if len(set(labels[keep].tolist())) < 2:
        raise DataError(f"{where}: every label falls on one side of the threshold {threshold:g}; "
                        "set data.label_threshold between the negative and positive values")
    dropped = int((~keep).sum())
    return labels, keep, f"{why} ({where}); {dropped} row(s) equal to {threshold:g} dropped"


def _as_numbers(raw: list[str]) -> np.ndarray | None:
    try:
        return np.array([float(v) if v.strip() else math.nan for v in raw], dtype=np.float64)
    except ValueError:
        return None


def _few(values: list, limit: int = 8) -> str:
    shown = ", ".join(repr(v) for v in values[:limit])
    return f"[{shown}{', ...' if len(values) > limit else ''}] ({len(values)} distinct)"
