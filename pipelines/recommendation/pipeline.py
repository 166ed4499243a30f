"""Recommendation end to end: ratings -> MF / NeuMF / two-tower -> RMSE and full-catalogue top-N -> `recommend`.

The model takes raw user and item ids; evaluation ranks every catalogue item for every test user (what each
user rated before the test excluded) and puts most-popular, item-kNN and EASE beside it, scored by the same code.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from deepsuite.common.data.cache import array_digest
from deepsuite.common.errors import DataError
from deepsuite.common.pipeline import DatasetInfo, Evaluation, FitData, Pipeline, Split, to_numpy
from deepsuite.common.training import optimizer, steps_per_epoch
from deepsuite.pipelines.recommendation import config as cfg
from deepsuite.pipelines.recommendation import layers as _layers  # noqa: F401 - registers the custom layers for loading
from deepsuite.pipelines.recommendation import evaluate as report
from deepsuite.pipelines.recommendation.ranking import (baseline_scorers, bias_baseline_rmse, evaluate_ranker,
                                              popularity_scorer)
from deepsuite.pipelines.recommendation.splits import Catalogue, Interactions, RatingSplits, index_of

EXTRAS_FILE = "recommendation.json"
PREDICT_BATCH = 65536


class RecommendationPipeline(Pipeline):
    description = "Recommender (biased MF, NeuMF or two-tower retrieval): raw user/item ids in, ratings or top-N out"
    config_cls = cfg.RecommendationConfig
    presets = cfg.PRESETS
    default_dataset = "MovieLens 100K (inside the recbole==1.2.1 wheel on PyPI, offline; else GroupLens)"
    monitor = "val_loss"
    monitor_mode = "min"

    # -- data -------------------------------------------------------------------------------------

    def load_data(self, config: cfg.RecommendationConfig) -> RatingSplits:
        from deepsuite.pipelines.recommendation.ratings import load_ratings
        from deepsuite.pipelines.recommendation.splits import split_ratings

        data = config.data
        ratings = load_ratings(data.source, data.items, data.duplicates, data.cache_dir, data.download)
        catalogue = split_ratings(ratings, data.split, data.test_fraction, data.val_fraction, config.seed,
                                  data.max_users)
        id_mode = _id_mode(catalogue)
        if id_mode == "index":
            catalogue.notes.append("string ids without TensorFlow: ids are mapped to indices outside the model "
                                   "(recommend does this from the exported vocabulary)")
        part = lambda p: Split(model_inputs(catalogue, id_mode, p.users, p.items), p.ratings)  # noqa: E731
        metadata = {"kind": config.model.kind, "id_mode": id_mode, "split": data.split,
                    "num_users": catalogue.num_users, "num_items": catalogue.num_items,
                    "rating_range": list(catalogue.rating_range), "global_mean": float(catalogue.train.ratings.mean()),
                    "side_features": {k: len(v) for k, v in catalogue.feature_names.items()},
                    "notes": catalogue.notes}
        digest = array_digest(*(np.asarray(a, dtype=str) if a.dtype == object else a for a in (
            catalogue.train.raw_users, catalogue.train.raw_items, catalogue.train.ratings,
            catalogue.test.raw_users, catalogue.test.raw_items)))
        info = DatasetInfo(name=ratings.name, source=ratings.source, digest=digest, version=data.split, metadata=metadata)
        return RatingSplits(part(catalogue.train), part(catalogue.val), part(catalogue.test), info, catalogue=catalogue)

    # -- model ------------------------------------------------------------------------------------

    def build_model(self, config: cfg.RecommendationConfig, splits: RatingSplits):
        from deepsuite.pipelines.recommendation.model import build_recommender, compile_recommender, log_frequency, trained_rows

        cat = splits.catalogue
        fit = _fit_interactions(cat, config.model.kind)
        id_mode = splits.info.metadata["id_mode"]
        user_vocab, item_vocab = _model_vocab(cat, id_mode)
        model = build_recommender(
            config.model, user_vocab, item_vocab, id_mode == "string", cat.user_features, cat.item_features,
            trained_rows(cat.num_users, fit.users), trained_rows(cat.num_items, fit.items),
            float(cat.train.ratings.mean()), cat.rating_range, log_frequency(cat.num_items, fit.items), config.seed)
        steps = steps_per_epoch(len(fit), config.train.batch_size)
        return compile_recommender(model, config.model.kind, optimizer(config.train, steps), id_mode == "string")

    def fit_data(self, splits: RatingSplits, config) -> FitData:
        """Rating models fit train and validate on val; the two-tower (no validation loss) fits both."""
        cat, id_mode = splits.catalogue, splits.info.metadata["id_mode"]
        if config.model.kind == "two_tower":
            fit = _fit_interactions(cat, "two_tower")
            return FitData(model_inputs(cat, id_mode, fit.users, fit.items), None)
        validation = (splits.val.x, splits.val.y) if len(splits.val) else None
        return FitData(splits.train.x, splits.train.y, validation)

    # -- evaluation -------------------------------------------------------------------------------

    def evaluate(self, model, splits: RatingSplits, config) -> Evaluation:
        cat, meta, k = splits.catalogue, splits.info.metadata, config.evaluation.k
        metrics: dict[str, float] = {}
        notes = list(cat.notes)
        if config.model.kind != "two_tower":
            predicted = to_numpy(model.predict(splits.test.x, batch_size=PREDICT_BATCH, verbose=0)).reshape(-1)
            errors = predicted - cat.test.ratings
            metrics |= {"rmse": float(np.sqrt(np.mean(errors ** 2))), "mae": float(np.mean(np.abs(errors)))}
            metrics |= bias_baseline_rmse(cat)
        scorers, baseline_notes = baseline_scorers(cat, config.evaluation.knn_neighbours, config.evaluation.ease_lambda,
                                                   config.evaluation.max_baseline_items)
        notes += baseline_notes
        ours = evaluate_ranker(model_scorer(model, cat, meta["id_mode"]), cat, k)
        metrics |= ours.metrics
        ranked = {"model": ours.metrics}
        for name, scorer in scorers.items():
            result = evaluate_ranker(scorer, cat, k)
            ranked[name] = result.metrics
            metrics |= {f"{name}_{key}": value for key, value in result.metrics.items()}
        notes.append(f"top-{k} over the full catalogue ({cat.num_items} items) for {len(ours.users)} test users, "
                     "items rated before the test excluded; baselines scored by the same code")
        tables = {"example_recommendations.md": report.examples_table(cat, ours, config.evaluation.examples),
                  "ranking_vs_baselines.md": report.comparison_table(ranked, k)}
        figures = {"ranking_vs_baselines": report.comparison_figure(ranked, k)}
        return Evaluation(metrics, figures, tables, notes)

    # -- export and inference -------------------------------------------------------------------

    def export_extras(self, model, splits: RatingSplits, config, export_dir) -> None:
        """Ids, titles, popularity and every user's rated items: what `recommend` needs beside the model."""
        cat = splits.catalogue
        rated: dict[str, list] = {}
        for part in (cat.train, cat.val, cat.test):
            for user, item in zip(part.users.tolist(), part.items.tolist()):
                rated.setdefault(str(user), []).append(item)
        extras = {"id_mode": splits.info.metadata["id_mode"], "kind": config.model.kind,
                  "user_ids": cat.user_vocab.tolist(), "item_ids": cat.item_vocab.tolist(), "titles": cat.titles,
                  "popularity": cat.popularity().astype(int).tolist(), "rated": rated}
        (Path(export_dir) / EXTRAS_FILE).write_text(json.dumps(extras), encoding="utf-8")

    def recommend(self, model, metadata: Mapping[str, Any], options: Mapping[str, Any]) -> list[dict]:
        path = Path(metadata["export_dir"]) / EXTRAS_FILE
        if not path.exists():
            raise DataError(f"{path} is missing; re-export the model with `deepsuite run recommendation`")
        extras = json.loads(path.read_text(encoding="utf-8"))
        top = int(options.get("top") or 10)
        if top < 1:
            raise DataError(f"--top {top}: ask for at least one item")
        user_raw = str(options["user"])
        user_vocab = _vocab_array(extras["user_ids"])
        item_vocab = _vocab_array(extras["item_ids"])
        user = int(index_of(user_vocab, np.array([user_raw]))[0])
        popularity = np.asarray(extras["popularity"], dtype="float64")
        if user == 0:
            scores, rated, how = popularity.copy(), [], f"user {user_raw} is unknown: most popular items instead"
            value_name = "rated by"
        else:
            catalogue_items = np.arange(1, len(item_vocab) + 1)
            inputs = _raw_or_index(extras["id_mode"], user_vocab, item_vocab, np.full(len(catalogue_items), user),
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

    def search_space(self, hp, config):
        return cfg.search_space(hp, config)

    def run_name(self, config) -> str:
        return f"{config.model.kind}-{config.data.split}-{config.preset}"


# ------------------------------------------------------------------------------------------------
# Ids: raw ints (IdLookup in the model), raw strings (StringLookup, TensorFlow) or indices (strings elsewhere)


def _id_mode(catalogue: Catalogue) -> str:
    import keras

    if catalogue.user_vocab.dtype.kind in "iu" and catalogue.item_vocab.dtype.kind in "iu":
        return "int"
    return "string" if keras.backend.backend() == "tensorflow" else "index"


def _model_vocab(cat: Catalogue, id_mode: str):
    if id_mode == "index":
        return np.arange(1, cat.num_users + 1), np.arange(1, cat.num_items + 1)
    if id_mode == "string":
        return cat.user_vocab.astype(str), cat.item_vocab.astype(str)
    return cat.user_vocab, cat.item_vocab


def model_inputs(cat: Catalogue, id_mode: str, users: np.ndarray, items: np.ndarray) -> dict[str, np.ndarray]:
    return _raw_or_index(id_mode, cat.user_vocab, cat.item_vocab, users, items)


def _raw_or_index(id_mode: str, user_vocab, item_vocab, users: np.ndarray, items: np.ndarray) -> dict[str, np.ndarray]:
    """Index arrays (1-based) -> what the model takes: raw int ids, raw strings, or the indices themselves."""
    if id_mode == "index":
        return {"user_id": users.astype("int32"), "item_id": items.astype("int32")}
    user_ids, item_ids = np.asarray(user_vocab)[users - 1], np.asarray(item_vocab)[items - 1]
    if id_mode == "string":
        # object arrays of str: Keras refuses NumPy's fixed-width unicode dtype
        return {"user_id": user_ids.astype(str).astype(object), "item_id": item_ids.astype(str).astype(object)}
    return {"user_id": user_ids.astype("int32"), "item_id": item_ids.astype("int32")}


def _vocab_array(values: list) -> np.ndarray:
    return np.asarray(values, dtype="int64") if all(isinstance(v, int) for v in values) else np.asarray(values, dtype=object)


def _fit_interactions(cat: Catalogue, kind: str) -> Interactions:
    if kind != "two_tower" or not len(cat.val):
        return cat.train
    join = lambda name: np.concatenate([getattr(cat.train, name), getattr(cat.val, name)])  # noqa: E731
    return Interactions(*(join(n) for n in ("users", "items", "ratings", "raw_users", "raw_items", "times")))


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
