"""What crosses the text-generation pipeline's stage boundaries, typed: the export metadata and `generate`'s options."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from deepsuite.common.commands import Options
from deepsuite.common.export import ExportMetadata


class TokenizerSpec(BaseModel):
    """`tokenizer.Tokenizer.to_dict()`: what `tokenizer.from_dict` rebuilds the tokenizer from."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["char", "byte"]
    vocabulary: list[str] = Field(description="token i's text (char) or <0xNN> names of the 256 bytes (byte)")


class TextGenerationMetadata(ExportMetadata):
    """What `load_data` learns about the corpus; `generate` encodes prompts and decodes ids with the tokenizer."""

    tokenizer: TokenizerSpec = Field(description="also saved beside the model as tokenizer.json")
    vocab_size: int = Field(description="tokens the model's embedding and logits cover")
    context: int = Field(description="model.context: tokens the model sees")
    test_is_validation: bool = Field(description="true when the test figures are on the validation text "
                                                 "(data.test_fraction=0, as nanoGPT reports)")
    tokens: dict[str, int] = Field(description="tokens in each split: train, val, test")


MAX_TOKENS = 4096  # one request's work under the server's model lock stays bounded


class GenerateOptions(Options):
    """`deepsuite generate MODEL --prompt ... --max-tokens N ...`; JSON {"prompt": "ROMEO:", "max_tokens": 50}."""

    prompt: str = Field("", description="text to continue")
    max_tokens: int = Field(300, le=MAX_TOKENS, description=f"tokens to generate (at most {MAX_TOKENS})")
    temperature: float = Field(1.0, description="0 = greedy; higher = more random")
    top_k: int | None = Field(None, description="sample among the k most likely tokens")
    top_p: float | None = Field(None, description="nucleus sampling mass, in (0, 1]")
    seed: int | None = Field(None, description="random seed for reproducible samples")
    stop: str | None = Field(None, description="stop when this string is generated")
