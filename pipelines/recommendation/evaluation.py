"""Evaluation: RMSE/MAE, full-catalogue top-N beside most-popular, item-kNN and EASE, and the report's tables.

Every test user's ranking covers the whole catalogue minus what the user rated before the test; the baselines
are scored by the same code (ranking.py). The tables show example users with titles and the model beside its
baselines.
"""
from __future__ import annotations

import numpy as np

from deepsuite.common import reports
from deepsuite.common.pipeline import Evaluation, to_numpy
from deepsuite.pipelines.recommendation.config import RecommendationConfig
from deepsuite.pipelines.recommendation.ranking import (RankingResult, baseline_scorers, bias_baseline_rmse,
                                                        evaluate_ranker, popularity_scorer)
from deepsuite.pipelines.recommendation.splits import PREDICT_BATCH, Catalogue, RatingSplits, model_inputs

LABELS = {"model": "this model", "popularity": "most popular", "item_knn": "item-kNN", "ease": "EASE"}


def evaluate(model, splits: RatingSplits, config: RecommendationConfig) -> Evaluation:
    cat, k = splits.catalogue, config.evaluation.k
    metrics: dict[str, float] = {}
    notes = list(cat.notes)
    if config.model.kind != "two_tower":
        if cat.streamed:  # memmapped rows: predicted batch by batch
            from deepsuite.pipelines.recommendation.rating_batches import predict_rows

            predicted = predict_rows(model, splits.test.x, PREDICT_BATCH, config.data.stream_workers).reshape(-1)
        else:
            predicted = to_numpy(model.predict(splits.test.x, batch_size=PREDICT_BATCH, verbose=0)).reshape(-1)
        errors = predicted - cat.test.ratings
        metrics |= {"rmse": float(np.sqrt(np.mean(errors ** 2))), "mae": float(np.mean(np.abs(errors)))}
        metrics |= bias_baseline_rmse(cat)
    scorers, baseline_notes = baseline_scorers(cat, config.evaluation.knn_neighbours, config.evaluation.ease_lambda,
                                               config.evaluation.max_baseline_items)
    notes += baseline_notes
    ours = evaluate_ranker(model_scorer(model, cat, splits.metadata.id_mode), cat, k)
    metrics |= ours.metrics
    ranked = {"model": ours.metrics}
    for name, scorer in scorers.items():
        result = evaluate_ranker(scorer, cat, k)
        ranked[name] = result.metrics
        metrics |= {f"{name}_{key}": value for key, value in result.metrics.items()}
    notes.append(f"top-{k} over the full catalogue ({cat.num_items} items) for {len(ours.users)} test users, "
                 "items rated before the test excluded; baselines scored by the same code")
    tables = {"example_recommendations.md": examples_table(cat, ours, config.evaluation.examples),
              "ranking_vs_baselines.md": comparison_table(ranked, k)}
    figures = {"ranking_vs_baselines": comparison_figure(ranked, k)}
    return Evaluation(metrics, figures, tables, notes)


def model_scorer(model, cat: Catalogue, id_mode: str):
    """Scores of every catalogue item for a block of users; users without any rating before the test get
    popularity (the same fallback `recommend` uses for unknown users)."""
    items = np.arange(1, cat.num_items + 1)
    history = np.zeros(cat.num_users + 1, dtype=bool)
    history[cat.train.users] = True
    history[cat.val.users] = True
    popularity = popularity_scorer(cat)

    def score(users: np.ndarray) -> np.ndarray:
        inputs = model_inputs(cat, id_mode, np.repeat(users, len(items)), np.tile(items, len(users)))
        predicted = to_numpy(model.predict(inputs, batch_size=PREDICT_BATCH, verbose=0)).reshape(len(users), -1)
        scores = np.concatenate([np.full((len(users), 1), -np.inf), predicted.astype("float64")], axis=1)
        cold = ~history[users]
        if cold.any():
            scores[cold] = popularity(users[cold])
        return scores

    return score


def _cell(text: str) -> str:
    return str(text).replace("|", "/").replace("\n", " ")


def examples_table(cat: Catalogue, result: RankingResult, count: int, shown: int = 5) -> str:
    """Markdown: for a few test users, what they rated last, the model's top titles, and the held-out item(s)."""
    if count == 0 or not len(result.users):
        return "no example users\n"
    rows = ["| user | last rated before the test | top recommendations | held-out (test) | hits |",
            "| --- | --- | --- | --- | --- |"]
    history = [cat.train, cat.val]
    for position in np.linspace(0, len(result.users) - 1, min(count, len(result.users))).astype(int):
        user = result.users[position]
        items = np.concatenate([p.items[p.users == user] for p in history])
        times = np.concatenate([p.times[p.users == user] for p in history])
        rated_items = items[np.argsort(times, kind="stable")][-3:]
        test_items = cat.test.items[cat.test.users == user]
        top = result.top[position][:shown]
        hits = sum(1 for item in top if item in set(test_items.tolist()))
        title = lambda items: "; ".join(cat.titles[i] for i in items)  # noqa: E731
        rows.append(f"| {_cell(cat.user_vocab[user - 1])} | {_cell(title(rated_items))} | {_cell(title(top))} | "
                    f"{_cell(title(test_items[:3]))}{' ...' if len(test_items) > 3 else ''} | {hits} |")
    return "\n".join(rows) + "\n"


def comparison_table(ranked: dict[str, dict[str, float]], k: int) -> str:
    keys = [f"hit_rate_at_{k}", f"recall_at_{k}", f"ndcg_at_{k}", f"coverage_at_{k}"]
    rows = ["| ranker | " + " | ".join(keys) + " |", "| --- |" + " --- |" * len(keys)]
    for name, metrics in ranked.items():
        rows.append(f"| {LABELS.get(name, name)} | " + " | ".join(f"{metrics[key]:.4f}" for key in keys) + " |")
    return "\n".join(rows) + "\n"


def comparison_figure(ranked: dict[str, dict[str, float]], k: int):
    plt = reports.pyplot()
    keys = [f"hit_rate_at_{k}", f"ndcg_at_{k}", f"recall_at_{k}"]
    names = list(ranked)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / len(names)
    for n, name in enumerate(names):
        ax.bar(np.arange(len(keys)) + n * width, [ranked[name][key] for key in keys], width, label=LABELS.get(name, name))
    ax.set_xticks(np.arange(len(keys)) + 0.4 - width / 2, keys)
    ax.set_title(f"Top-{k} on the full catalogue (test users)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig
