"""Top-N evaluation of any scorer on the full catalogue, and the baselines it is always shown beside.

A scorer maps a block of user indices to (len, num_items + 1) scores (column 0 is the unknown-item slot and
is never ranked). The model, most-popular, item-kNN and EASE all go through `evaluate_ranker`, which excludes
what each user rated before the test (train + validation) and scores the top k against the test items.
Baselines see the same interactions as the model (train + validation).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from deepsuite.common.metrics_ranking import rank_users, ranking_metrics
from deepsuite.pipelines.recommendation.splits import Catalogue

Scorer = Callable[[np.ndarray], np.ndarray]


@dataclass
class RankingResult:
    metrics: dict[str, float]
    users: np.ndarray   # evaluated user indices
    top: np.ndarray     # (users, k) item indices


def interaction_matrix(catalogue: Catalogue) -> np.ndarray:
    """(users+1, items+1) float32 0/1 of train + validation interactions: what the baselines learn from."""
    matrix = np.zeros((catalogue.num_users + 1, catalogue.num_items + 1), dtype="float32")
    for part in (catalogue.train, catalogue.val):
        matrix[part.users, part.items] = 1.0
    return matrix


def test_relevance(catalogue: Catalogue) -> tuple[np.ndarray, np.ndarray]:
    """(users with a test item, their (users, items+1) bool matrix of test items)."""
    users = np.unique(catalogue.test.users)
    users = users[users > 0]
    row = np.full(catalogue.num_users + 1, -1)
    row[users] = np.arange(len(users))
    relevant = np.zeros((len(users), catalogue.num_items + 1), dtype=bool)
    keep = catalogue.test.users > 0
    relevant[row[catalogue.test.users[keep]], catalogue.test.items[keep]] = True
    relevant[:, 0] = False
    return users, relevant


def evaluate_ranker(scorer: Scorer, catalogue: Catalogue, k: int, seen: np.ndarray | None = None) -> RankingResult:
    seen = catalogue.seen_matrix() if seen is None else seen
    users, relevant = test_relevance(catalogue)
    top = rank_users(scorer, users, seen, k)
    return RankingResult(ranking_metrics(top, relevant, catalogue.num_items, k), users, top)


# ------------------------------------------------------------------------------------------------
# Baselines


def popularity_scorer(catalogue: Catalogue) -> Scorer:
    counts = catalogue.popularity()
    counts[0] = -np.inf
    return lambda users: np.broadcast_to(counts, (len(users), len(counts)))


def item_knn_scorer(interactions: np.ndarray, neighbours: int) -> Scorer:
    """Item-based kNN: cosine similarity of item columns, each item keeps its `neighbours` most similar."""
    norms = np.sqrt(interactions.sum(axis=0)) + 1e-9
    similarity = (interactions.T @ interactions) / norms[:, None] / norms[None, :]
    np.fill_diagonal(similarity, 0.0)
    if neighbours < similarity.shape[0]:
        threshold = -np.partition(-similarity, neighbours - 1, axis=0)[neighbours - 1]
        similarity[similarity < threshold[None, :]] = 0.0
    return lambda users: interactions[users] @ similarity


def ease_scorer(interactions: np.ndarray, l2: float) -> Scorer:
    """EASE (Steck 2019): item-item weights B = closed-form ridge regression with diag(B) = 0."""
    gram = (interactions.T @ interactions).astype("float64")
    gram[np.diag_indices_from(gram)] += l2
    precision = np.linalg.inv(gram)
    weights = (-precision / np.diag(precision)).astype("float32")
    np.fill_diagonal(weights, 0.0)
    return lambda users: interactions[users] @ weights


def baseline_scorers(catalogue: Catalogue, knn_neighbours: int, ease_l2: float, max_items: int) -> tuple[dict[str, Scorer], list[str]]:
    scorers: dict[str, Scorer] = {"popularity": popularity_scorer(catalogue)}
    notes = []
    if catalogue.num_items + 1 <= max_items:
        interactions = interaction_matrix(catalogue)
        scorers["item_knn"] = item_knn_scorer(interactions, knn_neighbours)
        scorers["ease"] = ease_scorer(interactions, ease_l2)
    else:
        notes.append(f"item-kNN and EASE skipped: {catalogue.num_items} items > evaluation.max_baseline_items")
    return scorers, notes


def bias_baseline_rmse(catalogue: Catalogue, l2_item: float = 25.0, l2_user: float = 10.0, sweeps: int = 10) -> dict[str, float]:
    """RMSE of the global mean and of mean + user + item biases (alternating ridge), for scale beside MF."""
    train, test = catalogue.train, catalogue.test
    mu = float(train.ratings.mean())
    b_user = np.zeros(catalogue.num_users + 1)
    b_item = np.zeros(catalogue.num_items + 1)
    for _ in range(sweeps):
        residual = train.ratings - mu - b_user[train.users]
        b_item = np.bincount(train.items, residual, catalogue.num_items + 1) / (
            np.bincount(train.items, minlength=catalogue.num_items + 1) + l2_item)
        residual = train.ratings - mu - b_item[train.items]
        b_user = np.bincount(train.users, residual, catalogue.num_users + 1) / (
            np.bincount(train.users, minlength=catalogue.num_users + 1) + l2_user)
    low, high = catalogue.rating_range
    predicted = np.clip(mu + b_user[test.users] + b_item[test.items], low, high)
    rmse = lambda p: float(np.sqrt(np.mean((p - test.ratings) ** 2)))  # noqa: E731
    return {"global_mean_rmse": rmse(np.full(len(test), mu)), "biases_rmse": rmse(predicted)}
