"""Config, presets and search space of the image-classification pipeline."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from deepsuite.common.config import RunConfig, Section, TrainConfig, recipe_default


class DataConfig(Section):
    source: str = Field("fashion_mnist", description="fashion_mnist | keras:<name> | tfds:<name> | folder:<path>")
    val_fraction: float = Field(0.1, gt=0, lt=0.5, description="share of train held out for validation")
    max_train_samples: int | None = Field(None, ge=10, description="subsample train (smoke tests, quick looks)")
    max_test_samples: int | None = Field(None, ge=10)
    image_size: tuple[int, int] | None = Field(None, description="resize to (height, width); folders default 64x64")
    channels: Literal[1, 3] | None = Field(None, description="force grey (1) or RGB (3); default: as stored")
    cache_dir: str | None = None
    tfds_data_dir: str | None = None
    download: bool = True
    stream: bool | None = Field(None, description="folder and tfds sources: read images per batch from disk "
                                                  "(bounded memory) instead of loading arrays (tfds: prepared "
                                                  "once into a memmap in the cache); unset: stream when the "
                                                  "decoded images would take over 25% of the available memory")
    stream_workers: int | None = Field(None, ge=1, le=64, description="threads decoding streamed batches; "
                                                                      "default: CPU cores, at most 8")


class ModelConfig(Section):
    kind: Literal["cnn"] = "cnn"
    widths: list[int] = Field([24, 48, 96], min_length=1, max_length=6, description="filters per stage")
    blocks_per_stage: int | list[int] = Field([2, 2, 1], description="conv blocks per stage: one number, "
                                                                     "or one per stage")
    head: Literal["flatten", "gap"] = Field("flatten", description="flatten keeps where features are (small "
                                                                 "images); global average pooling is size-free")
    dense_units: int = Field(256, ge=0, description="hidden units before the classifier; 0 for none")
    dropout: float = Field(0.3, ge=0, lt=1)
    augment: bool = Field(True, description="random horizontal flip and shifts (training only)")
    translate: float = Field(0.08, ge=0, le=0.5, description="max random shift, as a fraction of size")
    horizontal_flip: bool = True
    label_smoothing: float = Field(0.0, ge=0, lt=0.5)
    bn_momentum: float = Field(0.99, gt=0, lt=1, description="BatchNorm moving-average momentum; its statistics "
                                                            "need ~3/(1-momentum) steps, so use ~0.9 for runs of "
                                                            "a few hundred steps (subsets, short trials)")

    @model_validator(mode="after")
    def _blocks_match_stages(self):
        blocks = self.blocks_per_stage
        if isinstance(blocks, list) and len(blocks) != len(self.widths):
            raise ValueError(f"model.blocks_per_stage has {len(blocks)} entries but model.widths has "
                             f"{len(self.widths)} stages")
        if any(b < 1 or b > 4 for b in (blocks if isinstance(blocks, list) else [blocks])):
            raise ValueError("model.blocks_per_stage values must be between 1 and 4")
        return self


class ImageClassificationConfig(RunConfig):
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    # bfloat16 compute (float32 weights): faster steps on a CPU with bfloat16 instructions (AVX512_BF16, AMX)
    # at the same validation accuracy; chosen on validation (pipeline README). Without those instructions the
    # runner says so: set train.mixed_precision=false.
    train: TrainConfig = TrainConfig(epochs=9, batch_size=128, learning_rate=2e-3, weight_decay=1e-4,
                                     early_stopping_patience=4, mixed_precision=True)


PRESETS: dict[str, dict] = {
    "default": {},
    "smoke": {
        "data": {"max_train_samples": 1200, "max_test_samples": 300},
        "model": {"widths": [8, 16], "blocks_per_stage": 1, "dense_units": 32, "bn_momentum": 0.9},
        "train": {"epochs": 2, "batch_size": 64, "learning_rate": 3e-3, "verbose": 0},
    },
    "full": {
        "model": {"widths": [64, 128, 256], "blocks_per_stage": 2, "dense_units": 512, "dropout": 0.4},
        "train": {"mixed_precision": True, "epochs": 40, "batch_size": 256, "learning_rate": 3e-3, "warmup_epochs": 2,
                  "early_stopping_patience": 10},
    },
}


def block_patterns(stages: int) -> list[str]:
    """Per-stage conv block counts the search tries: uniform 1s, the tapered 2..2-1, uniform 2s, 3..3-2."""
    patterns = [[1] * stages, [2] * (stages - 1) + [1], [2] * stages, [3] * (stages - 1) + [2]]
    return list(dict.fromkeys("-".join(map(str, p)) for p in patterns))


def search_space(hp, config: ImageClassificationConfig) -> ImageClassificationConfig:
    """The tuner's choices applied to `config`; model.py never sees `hp`.

    Variations around the recipe being tuned: the stage count stays the config's, every range contains the
    config's value, and each default is that value (`recipe_default`), so the first trial is the recipe.
    """
    values = config.model_dump()
    model, train = config.model, config.train
    stages = len(model.widths)
    widths, patterns = [16, 24, 32, 48], block_patterns(stages)
    blocks = model.blocks_per_stage if isinstance(model.blocks_per_stage, list) else [model.blocks_per_stage] * stages
    base = hp.Choice("model.base_width", widths, default=recipe_default(model.widths[0], widths))
    values["model"]["widths"] = [base * 2**i for i in range(stages)]
    pattern = hp.Choice("model.blocks_per_stage", patterns,
                        default=recipe_default("-".join(map(str, blocks)), patterns))
    values["model"]["blocks_per_stage"] = [int(b) for b in pattern.split("-")]
    units = [128, 256, 512]
    values["model"]["dense_units"] = hp.Choice("model.dense_units", units,
                                               default=recipe_default(model.dense_units, units))
    values["model"]["dropout"] = hp.Float("model.dropout", 0.1, 0.5, step=0.1,
                                          default=recipe_default(model.dropout, (0.1, 0.5)))
    values["train"]["learning_rate"] = hp.Float("train.learning_rate", 1e-3, 5e-3, sampling="log",
                                                default=recipe_default(train.learning_rate, (1e-3, 5e-3)))
    sizes = [64, 128, 256]
    values["train"]["batch_size"] = hp.Choice("train.batch_size", sizes,
                                              default=recipe_default(train.batch_size, sizes))
    return type(config).model_validate(values)
