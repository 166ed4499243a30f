"""Top-N ranking metrics over a full catalogue (NumPy, backend-free), the way recommender papers report them.

Every ranker (a model or a baseline) goes through the same two functions: `top_k` ranks the whole catalogue
for a block of users with their already-seen items excluded, and `ranking_metrics` scores those lists
against the held-out items, so a model and its baselines are compared by exactly the same code.

Definitions (per user with at least one held-out item, then averaged):
- HitRate@k: 1 if any held-out item is in the top k;
- Recall@k: held-out items in the top k / number of held-out items;
- NDCG@k: DCG of the top k (binary gains, 1/log2(rank + 1)) / the best possible DCG;
- coverage@k: distinct items in all users' top-k lists / catalogue size (a catalogue-level figure).
"""
from __future__ import annotations

from typing import Callable

import numpy as np


def top_k(scores: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """(users, items) scores -> (users, k) item columns, best first; `exclude` (bool, same shape) never ranks."""
    scores = np.array(scores, dtype="float64", copy=True)
    if exclude is not None:
        scores[exclude] = -np.inf
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def rank_users(score_block: Callable[[np.ndarray], np.ndarray], users: np.ndarray, exclude: np.ndarray, k: int,
               block: int = 256) -> np.ndarray:
    """top_k for many users, `block` users at a time: score_block(user rows) -> (len, items) scores."""
    lists = [top_k(score_block(users[s:s + block]), k, exclude[users[s:s + block]])
             for s in range(0, len(users), block)]
    return np.concatenate(lists) if lists else np.zeros((0, k), dtype=np.int64)


def ranking_metrics(top: np.ndarray, relevant: np.ndarray, catalogue_size: int, k: int | None = None) -> dict[str, float]:
    """top: (users, >=k) ranked item columns; relevant: (users, items) bool of held-out items."""
    k = k or top.shape[1]
    top = top[:, :k]
    hits = np.take_along_axis(relevant, top, axis=1).astype("float64")       # (users, k)
    n_relevant = relevant.sum(axis=1).astype("float64")
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits * discounts).sum(axis=1)
    ideal = np.cumsum(discounts)[np.minimum(n_relevant, k).astype(int) - 1]
    valid = n_relevant > 0
    return {
        f"hit_rate_at_{k}": float(hits.any(axis=1)[valid].mean()),
        f"recall_at_{k}": float((hits.sum(axis=1)[valid] / n_relevant[valid]).mean()),
        f"ndcg_at_{k}": float((dcg[valid] / ideal[valid]).mean()),
        f"coverage_at_{k}": float(len(np.unique(top[valid])) / catalogue_size),
    }
