"""What crosses the sentiment pipeline's stage boundaries, typed: the export metadata and predict's options."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from deepsuite.common.commands import Options, inputs_field, local_files_field
from deepsuite.common.export import ExportMetadata


class SentimentAnalysisMetadata(ExportMetadata):
    """What `load_data` learns about the texts; the model, the report and `deepsuite predict` read it."""

    class_names: list[str] = Field(description="label 0 and label 1: negative, positive")
    label_rule: str = Field(description="how the source's raw labels were mapped to 0/1")
    data_card: list[str] = Field(description="report lines: source, label rule, dropped rows, split and digest")
    split_digest: str = Field(description="content hash of the train/val/test split")
    split_seed: int = Field(description="data.split_seed the split was drawn with")
    model_input: Literal["text", "token_ids"] = Field(description=(
        "text: the model starts with TextVectorization and takes raw strings (TensorFlow); token_ids: it takes "
        "(batch, sequence_length) ids made by vectorize.Vectorizer with `vocabulary`"))
    sequence_length: int = Field(description="tokens per text the model takes; longer texts are cut")
    vocabulary: list[str] = Field(description="the training split's words: '' (padding), '[UNK]', then by count")


class PredictOptions(Options):
    inputs: list[str] = inputs_field("texts to classify", files=False, required=False)
    files: list[Path] = local_files_field("files of texts, one per non-blank line (UTF-8); the CLI's only: "
                                          "a scoring server reads no files")
