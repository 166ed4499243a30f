"""What crosses the recommendation pipeline's stage boundaries: the export metadata and `recommend`'s options."""
from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, ConfigDict, Field

from deepsuite.common.commands import Options
from deepsuite.common.export import ExportMetadata


class RecommendationMetadata(ExportMetadata):
    """What `load_data` learns about the ratings; the ids, titles and histories themselves are in the extras file."""

    kind: Literal["mf", "two_tower", "neumf"] = Field(description="model.kind the export was trained as")
    id_mode: Literal["int", "string", "index"] = Field(description=(
        "what the model takes: raw int ids, raw strings (StringLookup, TensorFlow) or 1-based indices "
        "(string ids without TensorFlow; recommend maps them from the exported vocabulary)"))
    split: Literal["random", "temporal"]
    num_users: int
    num_items: int
    rating_range: tuple[float, float]
    global_mean: float = Field(description="mean training rating")
    side_features: dict[str, int] = Field(default_factory=dict, description=(
        "side-feature tokens per kind ('user', 'item'), when the data has them"))
    notes: list[str] = Field(default_factory=list, description="what was done to the data (duplicates, cold start...)")


class RecommendOptions(Options):
    """`deepsuite recommend MODEL --user ID [--top N]`; JSON {"user": "42", "top": 10} (also "users")."""

    model_config = ConfigDict(coerce_numbers_to_str=True)  # {"user": 42} means user "42"

    user: str = Field(..., validation_alias=AliasChoices("user", "users"), description="user id as in the ratings data")
    top: int = Field(10, description="how many items")
