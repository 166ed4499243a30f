"""The recommendation report's tables and figure: example users with titles, and the model beside its baselines."""
from __future__ import annotations

import numpy as np

from deepsuite.pipelines.recommendation.ranking import RankingResult
from deepsuite.pipelines.recommendation.splits import Catalogue

LABELS = {"model": "this model", "popularity": "most popular", "item_knn": "item-kNN", "ease": "EASE"}


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
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

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
