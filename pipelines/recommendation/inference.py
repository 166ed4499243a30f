"""`recommend`: a user's top-N titles from the exported model, and the extras file it reads beside the model.

The extras (`recommendation.json`) hold the raw ids, titles, popularity and every user's rated items; the model
scores the whole catalogue for the user, rated items are excluded, and an unknown user gets the most popular items.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from deepsuite.common.errors import DataError
from deepsuite.common.export import Export
from deepsuite.common.pipeline import to_numpy
from deepsuite.pipelines.recommendation.config import RecommendationConfig
from deepsuite.pipelines.recommendation.contract import RecommendOptions
from deepsuite.pipelines.recommendation.splits import PREDICT_BATCH, RatingSplits, index_of, raw_or_index

EXTRAS_FILE = "recommendation.json"


def write_extras(splits: RatingSplits, config: RecommendationConfig, folder) -> None:
    """Ids, titles, popularity and every user's rated items: what `recommend` needs beside the model."""
    cat = splits.catalogue
    rated: dict[str, list] = {}
    for part in (cat.train, cat.val, cat.test):
        for user, item in zip(part.users.tolist(), part.items.tolist()):
            rated.setdefault(str(user), []).append(item)
    extras = {"id_mode": splits.metadata.id_mode, "kind": config.model.kind,
              "user_ids": cat.user_vocab.tolist(), "item_ids": cat.item_vocab.tolist(), "titles": cat.titles,
              "popularity": cat.popularity().astype(int).tolist(), "rated": rated}
    (Path(folder) / EXTRAS_FILE).write_text(json.dumps(extras), encoding="utf-8")


def recommend(model, export: Export, options: RecommendOptions) -> list[dict]:
    path = export.path(EXTRAS_FILE)
    if not path.exists():
        raise DataError(f"{path} is missing; re-export the model with `deepsuite run recommendation`")
    extras = json.loads(path.read_text(encoding="utf-8"))
    top = options.top
    if top < 1:
        raise DataError(f"--top {top}: ask for at least one item")
    user_raw = options.user
    user_vocab = _vocab_array(extras["user_ids"])
    item_vocab = _vocab_array(extras["item_ids"])
    user = int(index_of(user_vocab, np.array([user_raw]))[0])
    popularity = np.asarray(extras["popularity"], dtype="float64")
    if user == 0:
        scores, rated, how = popularity.copy(), [], f"user {user_raw} is unknown: most popular items instead"
        value_name = "rated by"
    else:
        catalogue_items = np.arange(1, len(item_vocab) + 1)
        inputs = raw_or_index(extras["id_mode"], user_vocab, item_vocab, np.full(len(catalogue_items), user),
                              catalogue_items)
        scores = np.r_[-np.inf, to_numpy(model.predict(inputs, batch_size=PREDICT_BATCH, verbose=0)).reshape(-1)]
        rated = extras["rated"].get(str(user), [])
        value_name = "predicted rating" if extras["kind"] != "two_tower" else "score"
        how = f"top {top} for user {user_raw} ({extras['kind']}; {len(rated)} rated items excluded)"
    scores[0] = -np.inf
    scores[rated] = -np.inf
    order = [int(i) for i in np.argsort(-scores, kind="stable")[:top] if np.isfinite(scores[i])]
    results = []
    for rank, item in enumerate(order, start=1):
        title = extras["titles"][item]
        value = f"{int(scores[item])} users" if user == 0 else f"{scores[item]:.3f}"
        line = f"{rank:>2}. {title}  (item {item_vocab[item - 1]}, {value_name} {value})"
        raw = item_vocab[item - 1]
        results.append({"rank": rank, "item_id": raw.item() if isinstance(raw, np.generic) else raw,
                        "title": title, "score": float(scores[item]),
                        "fallback": "popularity" if user == 0 else None,
                        "summary": (how + "\n" + line) if rank == 1 else line})
    if not results:
        results.append({"summary": f"{how}: nothing left to recommend", "fallback": None})
    return results


def _vocab_array(values: list) -> np.ndarray:
    """Exported ids as saved: ints stay ints, anything else is matched as strings."""
    return np.asarray(values, dtype="int64" if all(isinstance(v, int) for v in values) else object)
