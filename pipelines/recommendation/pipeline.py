"""Recommendation end to end: ratings -> MF / NeuMF / two-tower -> RMSE and full-catalogue top-N -> `recommend`.

The model takes raw user and item ids; evaluation ranks every catalogue item for every test user (what each
user rated before the test excluded) and puts most-popular, item-kNN and EASE beside it, scored by the same code.
"""
from __future__ import annotations

from deepsuite.common.commands import Command
from deepsuite.common.pipeline import Evaluation, FitData, Pipeline, Reference
from deepsuite.pipelines.recommendation import config as cfg
from deepsuite.pipelines.recommendation import data, evaluation, inference
from deepsuite.pipelines.recommendation.contract import RecommendationMetadata, RecommendOptions
from deepsuite.pipelines.recommendation.splits import RatingSplits


class RecommendationPipeline(Pipeline):
    description = "Recommender (biased MF, NeuMF or two-tower retrieval): raw user/item ids in, ratings or top-N out"
    config_cls = cfg.RecommendationConfig
    metadata_cls = RecommendationMetadata
    commands = (Command("recommend", "top-N recommendations for a user from a recommendation model",
                        RecommendOptions, "recommend", example={"user": "1", "top": 5}),)
    presets = cfg.PRESETS
    default_dataset = "MovieLens 100K (inside the recbole==1.2.1 wheel on PyPI, offline; else GroupLens)"
    monitor = "val_loss"
    monitor_mode = "min"
    references = (
        Reference("test_rmse", "0.8950", "python bench/recommendation.py: default preset, biased MF + side "
                  "features, random 80/20 split, seed 42, 2-core CPU, 2026-12-01", "movielens-100k", version="random"),
        Reference("test_ndcg_at_10", "0.0446", "python bench/recommendation.py: two-tower, leave-last-out "
                  "(data.split=temporal), seed 42, 2-core CPU, 2026-12-01", "movielens-100k", version="temporal"),
    )

    def load_data(self, config: cfg.RecommendationConfig) -> RatingSplits:
        return data.load_data(config)

    def build_model(self, config: cfg.RecommendationConfig, splits: RatingSplits):
        from deepsuite.pipelines.recommendation.model import build  # Keras loads when training

        return build(config, splits)

    def fit_data(self, splits: RatingSplits, config: cfg.RecommendationConfig) -> FitData:
        return data.fit_data(splits, config)

    def evaluate(self, model, splits: RatingSplits, config: cfg.RecommendationConfig) -> Evaluation:
        return evaluation.evaluate(model, splits, config)

    def export_extras(self, model, splits: RatingSplits, config: cfg.RecommendationConfig, export_dir) -> None:
        inference.write_extras(splits, config, export_dir)

    def request_example(self, splits: RatingSplits) -> tuple[list, dict]:
        return [str(user) for user in splits.catalogue.test.raw_users[:2]], {"top": 5}  # two test users' ids

    def recommend(self, model, export, options: RecommendOptions) -> list[dict]:
        return inference.recommend(model, export, options)

    def search_space(self, hp, config: cfg.RecommendationConfig) -> cfg.RecommendationConfig:
        return cfg.search_space(hp, config)

    def run_name(self, config: cfg.RecommendationConfig) -> str:
        return f"{config.model.kind}-{config.data.split}-{config.preset}"
