"""Config, presets and search space of the recommendation pipeline.

Defaults are the CPU settings that reach the issue's targets on MovieLens 100K (see bench/recommendation.py):
biased matrix factorisation with user/item side features, per-example L2 like SGD-trained MF, Adam, ~14 epochs.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from deepsuite.common.config import RunConfig, Section, TrainConfig, recipe_default


class DataConfig(Section):
    source: str = Field("movielens-100k", description=(
        "movielens-100k (offline: the recbole==1.2.1 wheel, else GroupLens) | grouplens:ml-100k | "
        "grouplens:ml-1m | csv:<path> (user,item,rating[,timestamp])"))
    items: str | None = Field(None, description="CSV of item,title[,genres] giving titles for a csv: source")
    split: Literal["random", "temporal"] = Field(
        "random", description="random: test_fraction of all ratings at random (the literature's 80/20); "
                              "temporal: each user's last rating is the test (leave-last-out)")
    test_fraction: float = Field(0.2, gt=0, lt=0.9, description="random split only")
    val_fraction: float = Field(0.05, ge=0, lt=0.5, description="share of the remaining ratings held out for "
                                "validation (random split); the temporal split holds out each user's "
                                "second-to-last rating instead")
    duplicates: Literal["latest", "mean", "error"] = Field(
        "latest", description="repeated (user, item) rows: keep the latest (by timestamp, then file order), "
                              "average them, or refuse the file")
    max_users: int | None = Field(None, ge=5, description="keep the first N users by id (smoke tests)")
    encoding: str = Field("utf-8", description="text encoding of csv: files (e.g. latin-1, cp1252); a file that "
                                               "does not decode is refused with the line of its first bad byte")
    cache_dir: str | None = None
    stream: bool | None = Field(None, description=(
        "csv: sources: parse the file in chunks into memmapped int32/float32 columns in the cache and read "
        "training batches from them (bounded memory) instead of loading it as Python rows; unset: stream when "
        "reading it into memory (about 40x the file's size) would take over 25% of the available memory"))
    stream_workers: int | None = Field(None, ge=1, le=64, description="threads gathering streamed batches "
                                                                      "(TensorFlow); default: CPU cores, at most 8")
    download: bool = Field(True, description="allow pip/GroupLens downloads into the cache")


class ModelConfig(Section):
    kind: Literal["mf", "two_tower", "neumf"] = Field(
        "mf", description="mf: biased matrix factorisation (rating regression); two_tower: retrieval on implicit "
                          "feedback with in-batch negatives; neumf: GMF + MLP rating regression")
    embedding_dim: int = Field(64, ge=2, le=1024)
    side_features: bool = Field(True, description="add item genres and user demographics when the data has them")
    l2: float = Field(0.1, ge=0, description="per-example L2 on the user/item factors (mf, neumf)")
    bias_l2: float = Field(0.03, ge=0, description="per-example L2 on the user/item biases (mf, neumf)")
    mlp_units: list[int] = Field([64, 32], min_length=1, max_length=4, description="neumf MLP tower")
    temperature: float = Field(0.1, gt=0, le=10, description="two_tower: softmax temperature on cosine scores")
    logq_correction: float = Field(1.0, ge=0, le=1, description=(
        "two_tower: subtract this times log(item frequency) from in-batch logits in training (sampling-bias "
        "correction, Yi et al. 2019); 0 disables"))


class EvaluationConfig(Section):
    k: int = Field(10, ge=1, le=100, description="cut-off of Recall/NDCG/HitRate/coverage @k")
    ease_lambda: float = Field(200.0, gt=0, description="L2 of the EASE baseline")
    knn_neighbours: int = Field(100, ge=1, description="neighbours per item of the item-kNN baseline")
    max_baseline_items: int = Field(20000, ge=10, description="skip the item-item baselines above this catalogue size")
    examples: int = Field(5, ge=0, le=50, description="users in the example-recommendations table")


class RecommendationConfig(RunConfig):
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    train: TrainConfig = TrainConfig(epochs=14, batch_size=1024, learning_rate=5e-3, optimizer="adam",
                                     weight_decay=0.0, early_stopping_patience=4)


PRESETS: dict[str, dict] = {
    "default": {},
    "smoke": {
        "data": {"max_users": 150},
        "model": {"embedding_dim": 16},
        "evaluation": {"examples": 3},
        "train": {"epochs": 2, "batch_size": 512, "verbose": 0},
    },
    "full": {
        "model": {"embedding_dim": 128},
        "train": {"mixed_precision": True, "epochs": 40, "batch_size": 2048, "early_stopping_patience": 6},
    },
}


def search_space(hp, config: RecommendationConfig) -> RecommendationConfig:
    """The tuner's choices applied to `config`; model.py never sees `hp`."""
    values = config.model_dump()
    model, train = config.model, config.train
    dims, sizes = [16, 32, 64, 128], [256, 512, 1024, 2048]
    values["model"]["embedding_dim"] = hp.Choice("model.embedding_dim", dims,
                                                 default=recipe_default(model.embedding_dim, dims))
    values["model"]["side_features"] = hp.Boolean("model.side_features", default=model.side_features)
    if config.model.kind == "two_tower":
        values["model"]["temperature"] = hp.Float("model.temperature", 0.03, 0.5, sampling="log",
                                                  default=recipe_default(model.temperature, (0.03, 0.5)))
        values["model"]["logq_correction"] = hp.Float("model.logq_correction", 0.0, 1.0, step=0.25,
                                                      default=recipe_default(model.logq_correction, (0.0, 1.0)))
    else:
        values["model"]["l2"] = hp.Float("model.l2", 0.01, 0.3, sampling="log",
                                         default=recipe_default(model.l2, (0.01, 0.3)))
        values["model"]["bias_l2"] = hp.Float("model.bias_l2", 0.001, 0.1, sampling="log",
                                              default=recipe_default(model.bias_l2, (0.001, 0.1)))
    values["train"]["learning_rate"] = hp.Float("train.learning_rate", 1e-3, 1e-2, sampling="log",
                                                default=recipe_default(train.learning_rate, (1e-3, 1e-2)))
    values["train"]["batch_size"] = hp.Choice("train.batch_size", sizes, default=recipe_default(train.batch_size, sizes))
    return type(config).model_validate(values)
