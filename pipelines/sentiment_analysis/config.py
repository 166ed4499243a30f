"""Config, presets and search space of the sentiment-analysis pipeline."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from deepsuite.common.config import RunConfig, Section, TrainConfig, recipe_default


class DataConfig(Section):
    source: str = Field("movie_reviews", description=(
        "movie_reviews | tweets | amazon_reviews | nyt_editorials (VADER snippet sets, offline via PyPI) | imdb "
        "(online: TFDS, else Keras download) | csv:<file> | tsv:<file> | folder:<dir> (one sub-folder per class, "
        "or aclImdb's train/ and test/)"))
    text_column: str = Field("text", description="csv/tsv: the column holding the text")
    label_column: str = Field("label", description="csv/tsv: the column holding the label")
    label_threshold: float | None = Field(None, description=(
        "numeric labels: above -> positive, below -> negative, equal -> dropped (default: 0 for signed ratings, "
        "3 for 1-5 stars)"))
    positive_labels: list[str] = Field([], description="label values meaning positive (with negative_labels)")
    negative_labels: list[str] = Field([], description="label values meaning negative (with positive_labels)")
    encoding: str = Field("utf-8", description="text encoding of csv/tsv/folder files (e.g. latin-1, cp1252)")
    skip_empty_texts: bool = Field(False, description="drop rows with empty text instead of failing")
    val_fraction: float = Field(0.1, gt=0, lt=0.5)
    test_fraction: float = Field(0.1, gt=0, lt=0.5, description="held out when the source has no test split")
    split_seed: int = Field(1234, ge=0, description="fixes the train/val/test split, independent of the run seed")
    max_train_samples: int | None = Field(None, ge=10, description="subsample train (smoke tests, quick looks)")
    max_test_samples: int | None = Field(None, ge=10)
    cache_dir: str | None = None
    tfds_data_dir: str | None = None
    download: bool = True
    stream: bool | None = Field(None, description=(
        "csv/tsv/folder sources: read and vectorize texts per batch from disk (bounded memory; an index of where "
        "each text lies is kept, every row checked first) instead of loading them; unset: stream when the "
        "texts would take over 25% of the available memory (estimated as 10x their bytes on disk)"))
    stream_workers: int | None = Field(None, ge=1, le=64, description=(
        "streamed batches read at a time (TensorFlow's tf.data map); default: CPU cores, at most 8"))

    @model_validator(mode="after")
    def _label_lists_come_in_pairs(self):
        if bool(self.positive_labels) != bool(self.negative_labels):
            raise ValueError("set both data.positive_labels and data.negative_labels, or neither")
        return self


class ModelConfig(Section):
    kind: Literal["ngram", "cnn", "bigru", "transformer"] = Field("ngram", description=(
        "ngram: the Naive-Bayes-weighted n-gram branch alone (NBSVM-style; the most accurate on short "
        "reviews without pretrained embeddings); cnn: convolutions of several widths over word embeddings "
        "(Kim 2014); bigru: bidirectional GRU/LSTM; transformer: small encoder. The last three add the "
        "n-gram branch's logit unless model.ngrams=0"))
    vocab_size: int = Field(20000, ge=100, le=1_000_000, description="words kept, incl. padding and [UNK]")
    sequence_length: int = Field(64, ge=4, le=4096, description="tokens per text; longer texts are cut")
    embedding_dim: int = Field(128, ge=4)
    dropout: float = Field(0.5, ge=0, lt=1, description="before the classifier")
    embedding_dropout: float = Field(0.2, ge=0, lt=1)
    # cnn
    filter_widths: list[int] = Field([3, 4, 5], min_length=1, max_length=6)
    filters: int = Field(100, ge=1, description="cnn: filters per width")
    # bigru
    rnn_cell: Literal["gru", "lstm"] = "gru"
    rnn_units: int = Field(64, ge=1)
    # transformer
    num_layers: int = Field(2, ge=1, le=12)
    num_heads: int = Field(4, ge=1)
    ff_dim: int = Field(256, ge=4)
    # the n-gram branch: hashed uni/bi/tri-grams weighted by Naive Bayes log-count ratios (NBSVM-style), whose
    # logit is added to the network's; 0 turns it off
    ngrams: int = Field(3, ge=0, le=4, description="longest n-gram in the NB branch; 0 disables the branch")
    ngram_buckets: int = Field(2**18, ge=1024, le=2**18, description="hash buckets for n-grams (n >= 2)")
    nb_alpha: float = Field(1.0, gt=0, description=(
        "additive (Laplace) smoothing of the per-class n-gram counts behind the Naive Bayes log-count ratios; "
        "smaller trusts rare n-grams more"))
    ngram_prior: float = Field(0.0, ge=0, description=(
        "n-gram weight = ratio * (ngram_weight_scale * w + ngram_prior), w learned from 0: > 0 starts the branch "
        "at the scaled Naive Bayes classifier, and weight decay pulls it back there (NBSVM's interpolation)"))
    ngram_weight_scale: float = Field(1.0, gt=0, description=(
        "multiplies the learned n-gram weights, so under Adam the branch moves this many times faster than the "
        "network: its own learning rate when the branch is trained jointly with a cnn/bigru/transformer"))
    ngram_binary: bool = Field(True, description=(
        "count each distinct n-gram of a text once (binarised features, as the NB ratios are counted); false: "
        "repeated n-grams add up"))
    char_ngrams: int = Field(5, ge=0, le=6, description=(
        "longest character n-gram (from 2) of a second NB-weighted bag added to the n-gram branch's logit, over "
        "the lower-cased text with punctuation and spaces kept (so it also sees word pieces, misspellings and "
        "words outside the vocabulary); 0 = off. Needs raw-string input, i.e. the TensorFlow backend: on JAX/PyTorch "
        "it is left out with a warning"))
    char_vocab_size: int = Field(2**17, ge=100, le=2**20, description=(
        "character n-grams kept (the most frequent in the training split), incl. [UNK]"))
    char_weight_scale: float = Field(0.1, gt=0, description=(
        "the character bag's step size under Adam, like model.ngram_weight_scale: a sentence has several times "
        "more character n-grams than words, so a smaller step keeps the bag from overfitting before the words"))

    @model_validator(mode="after")
    def _heads_divide_width(self):
        if self.kind == "transformer" and self.embedding_dim % self.num_heads:
            raise ValueError(f"model.embedding_dim ({self.embedding_dim}) must be divisible by model.num_heads "
                             f"({self.num_heads}) for the transformer")
        if self.kind == "ngram" and not (self.ngrams or self.char_ngrams):
            raise ValueError("model.kind=ngram needs model.ngrams >= 1 (or model.char_ngrams >= 2)")
        if self.char_ngrams == 1:
            raise ValueError("model.char_ngrams counts from 2: set 0 (off) or 2..6")
        return self


class SentimentAnalysisConfig(RunConfig):
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    # chosen on the validation split of movie_reviews (bench/sentiment_analysis.py docstring lists the sweep)
    train: TrainConfig = TrainConfig(epochs=15, batch_size=64, learning_rate=1e-2, weight_decay=1e-4,
                                     schedule="constant", early_stopping_patience=3)


PRESETS: dict[str, dict] = {
    "default": {},
    "smoke": {
        "data": {"max_train_samples": 1500, "max_test_samples": 300},
        "model": {"vocab_size": 3000, "sequence_length": 32, "embedding_dim": 16, "filters": 16, "rnn_units": 16,
                  "ff_dim": 32, "num_layers": 1, "num_heads": 2, "ngram_buckets": 2**14,
                  "char_vocab_size": 2**14},
        "train": {"epochs": 2, "batch_size": 64, "verbose": 0},
    },
    "full": {
        "model": {"vocab_size": 50000, "sequence_length": 128, "ngrams": 3, "embedding_dim": 256, "filters": 200},
        "train": {"mixed_precision": True, "epochs": 30, "batch_size": 128, "early_stopping_patience": 5},
    },
}


def search_space(hp, config: SentimentAnalysisConfig) -> SentimentAnalysisConfig:
    """The tuner's choices applied to `config`; model.py never sees `hp`."""
    values = config.model_dump()
    model, given = values["model"], config.model

    def choice(name, options):
        return hp.Choice(f"model.{name}", options, default=recipe_default(getattr(given, name), options))

    def number(kind, name, low, high, **kwargs):
        return kind(f"model.{name}", low, high, default=recipe_default(getattr(given, name), (low, high)), **kwargs)

    model["embedding_dim"] = choice("embedding_dim", [64, 128, 256])
    model["dropout"] = number(hp.Float, "dropout", 0.2, 0.6, step=0.1)
    model["ngrams"] = number(hp.Int, "ngrams", 1 if model["kind"] == "ngram" else 0, 3)
    if model["kind"] == "cnn":
        model["filters"] = choice("filters", [50, 100, 200])
    elif model["kind"] == "bigru":
        model["rnn_units"] = choice("rnn_units", [32, 64, 128])
    elif model["kind"] == "transformer":
        model["num_layers"] = number(hp.Int, "num_layers", 1, 3)
        model["num_heads"] = choice("num_heads", [2, 4])
    values["train"]["learning_rate"] = hp.Float("train.learning_rate", 3e-4, 3e-2, sampling="log",
                                                default=recipe_default(config.train.learning_rate, (3e-4, 3e-2)))
    return type(config).model_validate(values)
