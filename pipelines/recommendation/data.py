"""`load_data`: ratings (ratings.py) -> split catalogue (splits.py) -> model inputs, and what `fit()` receives.

x of every split is {"user_id", "item_id"} as the model takes them (raw ids, or indices for string ids without
TensorFlow) and y the ratings; the catalogue rides along for training, ranking evaluation and the export extras.

A `csv:` file may be streamed (`data.stream`, or automatically when reading it into memory would take too much
of it): it is parsed in chunks into memmapped columns (rating_store.py), split on them (stream_splits.py), x
holds lazy id columns and y the memmapped ratings, and fit() gets `rating_batches.RowBatches` in the order the
arrays would have had; the splits, the digest and the metrics are those of the in-memory path.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from deepsuite.common.data.cache import array_digest
from deepsuite.common.data.image_files import choose_streaming
from deepsuite.common.pipeline import DatasetInfo, FitData, Split
from deepsuite.pipelines.recommendation.config import RecommendationConfig
from deepsuite.pipelines.recommendation.contract import RecommendationMetadata
from deepsuite.pipelines.recommendation.ratings import load_ratings, read_items_csv
from deepsuite.pipelines.recommendation.splits import (RatingSplits, choose_id_mode, fit_interactions, model_inputs,
                                                       split_ratings)


def load_data(config: RecommendationConfig) -> RatingSplits:
    data = config.data
    if streams(data):
        return _load_streamed(config)
    ratings = load_ratings(data.source, data.items, data.duplicates, data.cache_dir, data.download, data.encoding)
    catalogue = split_ratings(ratings, data.split, data.test_fraction, data.val_fraction, config.seed, data.max_users)
    id_mode = choose_id_mode(catalogue)
    digest = array_digest(*(np.asarray(a, dtype=str) if a.dtype == object else a for a in (
        catalogue.train.raw_users, catalogue.train.raw_items, catalogue.train.ratings,
        catalogue.test.raw_users, catalogue.test.raw_items)))
    part = lambda p: Split(model_inputs(catalogue, id_mode, p.users, p.items), p.ratings)  # noqa: E731
    return _splits(config, catalogue, id_mode, part, DatasetInfo(name=ratings.name, source=ratings.source,
                                                                 digest=digest, version=data.split))


def streams(data) -> bool:
    """Whether this source is streamed: `data.stream` applies to csv: files (the named data sets are small)."""
    if not data.source.startswith("csv:"):
        return False
    path = Path(data.source.removeprefix("csv:")).expanduser()
    if not path.is_file():
        return bool(data.stream)   # either path names the missing file
    from deepsuite.pipelines.recommendation.rating_store import estimated_bytes

    return choose_streaming(data.stream, estimated_bytes(path), f"ratings file {path}")


def _load_streamed(config: RecommendationConfig) -> RatingSplits:
    from deepsuite.pipelines.recommendation.rating_store import open_store
    from deepsuite.pipelines.recommendation.stream_splits import split_digest, split_store, streamed_inputs

    data = config.data
    store = open_store(Path(data.source.removeprefix("csv:")), data.encoding, data.duplicates, data.cache_dir)
    titles, genres = read_items_csv(Path(data.items).expanduser(), data.encoding) if data.items else ({}, {})
    catalogue = split_store(store, data.split, data.test_fraction, data.val_fraction, config.seed, data.max_users,
                            titles, genres)
    id_mode = choose_id_mode(catalogue)
    part = lambda p: Split(streamed_inputs(catalogue, id_mode, p.users, p.items), p.ratings)  # noqa: E731
    info = DatasetInfo(name=store.name, source=store.source, digest=split_digest(catalogue), version=data.split)
    return _splits(config, catalogue, id_mode, part, info)


def _splits(config: RecommendationConfig, catalogue, id_mode: str, part, info: DatasetInfo) -> RatingSplits:
    if id_mode == "index":
        catalogue.notes.append("string ids without TensorFlow: ids are mapped to indices outside the model "
                               "(recommend does this from the exported vocabulary)")
    metadata = RecommendationMetadata(
        kind=config.model.kind, id_mode=id_mode, split=config.data.split, num_users=catalogue.num_users,
        num_items=catalogue.num_items, rating_range=catalogue.rating_range,
        global_mean=float(catalogue.train.ratings.mean()),
        side_features={k: len(v) for k, v in catalogue.feature_names.items()}, notes=catalogue.notes)
    return RatingSplits(part(catalogue.train), part(catalogue.val), part(catalogue.test), info, metadata,
                        catalogue=catalogue)


def fit_data(splits: RatingSplits, config: RecommendationConfig) -> FitData:
    """Rating models fit train and validate on val; the two-tower (no validation loss) fits both."""
    cat, id_mode = splits.catalogue, splits.metadata.id_mode
    if cat.streamed:
        return _streamed_fit_data(splits, config)
    if config.model.kind == "two_tower":
        fit = fit_interactions(cat, "two_tower")
        return FitData(model_inputs(cat, id_mode, fit.users, fit.items), None)
    validation = (splits.val.x, splits.val.y) if len(splits.val) else None
    return FitData(splits.train.x, splits.train.y, validation)


def _streamed_fit_data(splits: RatingSplits, config: RecommendationConfig) -> FitData:
    """The same, as batches read from the memmapped splits (tf.data on TensorFlow for validation)."""
    from deepsuite.pipelines.recommendation.rating_batches import RowBatches
    from deepsuite.pipelines.recommendation.stream_splits import streamed_inputs

    cat, id_mode = splits.catalogue, splits.metadata.id_mode
    batch, workers, seed = config.train.batch_size, config.data.stream_workers, config.seed
    if config.model.kind == "two_tower":
        fit = fit_interactions(cat, "two_tower")
        return FitData(RowBatches(streamed_inputs(cat, id_mode, fit.users, fit.items), None, batch, seed,
                                  workers=workers))
    validation = None
    if len(splits.val):
        val = RowBatches(splits.val.x, splits.val.y, batch, shuffle=False, workers=workers)
        validation = getattr(val, "dataset", val)
    return FitData(RowBatches(splits.train.x, splits.train.y, batch, seed, workers=workers),
                   validation_data=validation)
