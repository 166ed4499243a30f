"""`load_data`: ratings (ratings.py) -> split catalogue (splits.py) -> model inputs, and what `fit()` receives.

x of every split is {"user_id", "item_id"} as the model takes them (raw ids, or indices for string ids without
TensorFlow) and y the ratings; the catalogue rides along for training, ranking evaluation and the export extras.
"""
from __future__ import annotations

import numpy as np

from deepsuite.common.data.cache import array_digest
from deepsuite.common.pipeline import DatasetInfo, FitData, Split
from deepsuite.pipelines.recommendation.config import RecommendationConfig
from deepsuite.pipelines.recommendation.contract import RecommendationMetadata
from deepsuite.pipelines.recommendation.ratings import load_ratings
from deepsuite.pipelines.recommendation.splits import (RatingSplits, choose_id_mode, fit_interactions, model_inputs,
                                                       split_ratings)


def load_data(config: RecommendationConfig) -> RatingSplits:
    data = config.data
    ratings = load_ratings(data.source, data.items, data.duplicates, data.cache_dir, data.download, data.encoding)
    catalogue = split_ratings(ratings, data.split, data.test_fraction, data.val_fraction, config.seed, data.max_users)
    id_mode = choose_id_mode(catalogue)
    if id_mode == "index":
        catalogue.notes.append("string ids without TensorFlow: ids are mapped to indices outside the model "
                               "(recommend does this from the exported vocabulary)")
    part = lambda p: Split(model_inputs(catalogue, id_mode, p.users, p.items), p.ratings)  # noqa: E731
    metadata = RecommendationMetadata(
        kind=config.model.kind, id_mode=id_mode, split=data.split, num_users=catalogue.num_users,
        num_items=catalogue.num_items, rating_range=catalogue.rating_range,
        global_mean=float(catalogue.train.ratings.mean()),
        side_features={k: len(v) for k, v in catalogue.feature_names.items()}, notes=catalogue.notes)
    digest = array_digest(*(np.asarray(a, dtype=str) if a.dtype == object else a for a in (
        catalogue.train.raw_users, catalogue.train.raw_items, catalogue.train.ratings,
        catalogue.test.raw_users, catalogue.test.raw_items)))
    info = DatasetInfo(name=ratings.name, source=ratings.source, digest=digest, version=data.split)
    return RatingSplits(part(catalogue.train), part(catalogue.val), part(catalogue.test), info, metadata,
                        catalogue=catalogue)


def fit_data(splits: RatingSplits, config: RecommendationConfig) -> FitData:
    """Rating models fit train and validate on val; the two-tower (no validation loss) fits both."""
    cat, id_mode = splits.catalogue, splits.metadata.id_mode
    if config.model.kind == "two_tower":
        fit = fit_interactions(cat, "two_tower")
        return FitData(model_inputs(cat, id_mode, fit.users, fit.items), None)
    validation = (splits.val.x, splits.val.y) if len(splits.val) else None
    return FitData(splits.train.x, splits.train.y, validation)
