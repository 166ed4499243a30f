"""Sentiment classifiers over token ids, with the raw-string front end added on TensorFlow.

    [TF only] string (batch,) -> TextVectorization (fixed vocabulary) -> ids (batch, L)
    ids -> Embedding -> one body:
        cnn:         Conv1D of each width -> global max pool -> concat           (Kim 2014)
        bigru:       Bidirectional GRU/LSTM over the masked sequence -> final states
        transformer: + position embedding -> N x (self-attention, feed-forward) -> masked mean pool
        ngram:       no body (the n-gram branch alone)
    -> Dropout -> Dense(1) logit  [+ NaiveBayesNGrams logit over the same ids]
    [TF only, model.char_ngrams > 0: + NaiveBayesBag logit over the string's character 2..n-gram multi-hot]
    -> sigmoid = P(positive)

On JAX/PyTorch (no TensorFlow) the model starts at the ids; `vectorize.Vectorizer` produces them.
`build_model` counts the Naive Bayes log-count ratios of the training split, builds and compiles.
"""
from __future__ import annotations

import warnings

import keras
import numpy as np
from keras import layers

from deepsuite.common.errors import ConfigError
from deepsuite.common.pipeline import Splits, to_numpy
from deepsuite.common.training import optimizer, steps_per_epoch
from deepsuite.pipelines.sentiment_analysis.config import ModelConfig, SentimentAnalysisConfig
from deepsuite.pipelines.sentiment_analysis.data import text_chunks, texts_of
from deepsuite.pipelines.sentiment_analysis.layers import MaskedMeanPool, NaiveBayesBag, NaiveBayesNGrams, PositionEmbedding
from deepsuite.pipelines.sentiment_analysis.vectorize import (Vectorizer, nb_counts, ratios_from_counts,
                                                              takes_raw_strings)


def build_model(config: SentimentAnalysisConfig, splits: Splits) -> keras.Model:
    """The classifier of `config.model` with its n-gram weights from the training split, compiled."""
    vocabulary = splits.metadata.vocabulary
    model_cfg = config.model
    if model_cfg.char_ngrams and splits.metadata.model_input != "text":
        if not model_cfg.ngrams and model_cfg.kind == "ngram":
            raise ConfigError("model.char_ngrams needs the TensorFlow backend and model.ngrams is 0: nothing to "
                              "train; set model.ngrams >= 1")
        warnings.warn(f"model.char_ngrams={model_cfg.char_ngrams} left out: the character n-gram bag needs "
                      "raw-string input (TensorFlow backend)", stacklevel=2)
        model_cfg = model_cfg.model_copy(update={"char_ngrams": 0})
    ratios = None
    if model_cfg.ngrams:   # counted a piece of the training split at a time (a streamed one stays on disk)
        vectorizer = Vectorizer(vocabulary, model_cfg.sequence_length)
        counts = sum(nb_counts(vectorizer(texts), labels, model_cfg.ngrams, len(vocabulary), model_cfg.ngram_buckets)
                     for texts, labels in text_chunks(splits.train))
        ratios = ratios_from_counts(counts, model_cfg.nb_alpha, ignored=2)
    char_vocabulary = char_ratios = None
    if model_cfg.char_ngrams:
        char_vocabulary, char_ratios = char_ngram_ratios(texts_of(splits.train), splits.train.y, model_cfg)
    model = build_classifier(vocabulary, model_cfg, ratios, char_vocabulary, char_ratios)
    steps = steps_per_epoch(len(splits.train), config.train.batch_size)
    model.compile(optimizer=optimizer(config.train, steps), loss="binary_crossentropy",
                  metrics=["accuracy", keras.metrics.AUC(name="auc")])
    return model


CHAR_STANDARDIZE = "lower"  # punctuation kept: "!", "?", ":)" carry sentiment in character n-grams


def char_vectorizer(config: ModelConfig, vocabulary: list[str] | None = None, name: str = "char_vectorization"):
    """The string -> multi-hot bag of character 2..`char_ngrams`-grams (TensorFlow only, like TextVectorization)."""
    return layers.TextVectorization(max_tokens=config.char_vocab_size, standardize=CHAR_STANDARDIZE,
                                    split="character", ngrams=tuple(range(2, config.char_ngrams + 1)),
                                    output_mode="multi_hot", vocabulary=vocabulary, name=name)


def char_ngram_ratios(texts, labels, config: ModelConfig) -> tuple[list[str], np.ndarray]:
    """The training split's most frequent character n-grams (without [UNK]) and their NB log-count ratios.

    Counted by the model's own TextVectorization (so they match what it sees); n-grams holding a line break
    are dropped, since the vocabulary is saved one entry per line. `texts`: a list, or streamed
    `TextRecords`, read 512 at a time (the batches adapt() makes of a list).
    """
    counter = char_vectorizer(config, name="char_counter")
    if isinstance(texts, list):
        counter.adapt(np.array(texts, dtype=object), batch_size=512)
    else:
        counter.adapt(_string_batches(texts, 512))
    vocabulary = [str(t) for t in counter.get_vocabulary()[1:] if "\n" not in t and "\r" not in t]
    counter = char_vectorizer(config, vocabulary, name="char_counter")
    labels = np.asarray(labels).reshape(-1)
    counts = np.zeros((2, len(vocabulary) + 1))
    for start in range(0, len(texts), 256):
        bag = to_numpy(counter(np.array(list(texts[start: start + 256]), dtype=object)))
        for label in (0, 1):
            counts[label] += bag[labels[start: start + 256] == label].sum(axis=0)
    return vocabulary, ratios_from_counts(counts, config.nb_alpha, ignored=1)


def _string_batches(texts, size: int):
    """Texts on disk as a tf.data dataset of string batches of `size`, read as adapt() iterates it."""
    import tensorflow as tf

    def pieces():
        for start in range(0, len(texts), size):
            yield np.array([t.encode("utf-8") for t in texts[start:start + size]], dtype=object)

    return tf.data.Dataset.from_generator(pieces, output_signature=tf.TensorSpec((None,), tf.string))


def build_classifier(vocabulary: list[str], config: ModelConfig, nb_ratios: np.ndarray | None = None,
                     char_vocabulary: list[str] | None = None, char_ratios: np.ndarray | None = None) -> keras.Model:
    """`char_vocabulary` (without [UNK]) and `char_ratios` (one per multi-hot column) when model.char_ngrams > 0."""
    length = config.sequence_length
    if config.char_ngrams and not takes_raw_strings():
        raise ValueError("model.char_ngrams needs the TensorFlow backend (raw-string input); set model.char_ngrams=0")
    if config.char_ngrams and not char_vocabulary:
        raise ValueError("model.char_ngrams > 0 needs the character n-gram vocabulary of the training split")
    if takes_raw_strings():
        inputs = keras.Input(shape=(), dtype="string", name="text")
        vectorize = layers.TextVectorization(max_tokens=len(vocabulary), output_mode="int",
                                             output_sequence_length=length, vocabulary=vocabulary[2:],
                                             name="text_vectorization")
        ids = vectorize(inputs)
    else:
        inputs = keras.Input(shape=(length,), dtype="int32", name="token_ids")
        ids = inputs
    logits = []
    if config.kind != "ngram":
        features = _body(ids, len(vocabulary), config)
        features = layers.Dropout(config.dropout, name="dropout")(features)
        logits.append(layers.Dense(1, name="network_logit")(features))
    if config.ngrams:
        nb = NaiveBayesNGrams(len(vocabulary), config.ngrams, config.ngram_buckets, config.ngram_weight_scale,
                              config.ngram_prior, config.ngram_binary, name="ngram_logit")
        logits.append(nb(ids))
        if nb_ratios is not None:
            nb.set_ratios(nb_ratios)
    if config.char_ngrams:
        bag = char_vectorizer(config, list(char_vocabulary))(inputs)
        chars = NaiveBayesBag(len(char_vocabulary) + 1, config.char_weight_scale, config.ngram_prior,
                              name="char_ngram_logit")
        logits.append(chars(bag))
        if char_ratios is not None:
            chars.set_ratios(char_ratios)
    logit = logits[0] if len(logits) == 1 else layers.Add(name="logit")(logits)
    outputs = layers.Activation("sigmoid", dtype="float32", name="positive_probability")(logit)
    return keras.Model(inputs, outputs, name=f"sentiment_{config.kind}")


def _body(ids, vocab_size: int, config: ModelConfig):
    if config.kind == "cnn":
        x = layers.Embedding(vocab_size, config.embedding_dim, name="embedding")(ids)
        x = layers.Dropout(config.embedding_dropout, name="embedding_dropout")(x)
        pools = []
        for width in config.filter_widths:
            conv = layers.Conv1D(config.filters, width, padding="same", activation="relu", name=f"conv{width}")(x)
            pools.append(layers.GlobalMaxPooling1D(name=f"max_pool{width}")(conv))
        return pools[0] if len(pools) == 1 else layers.Concatenate(name="concat")(pools)
    if config.kind == "bigru":
        x = layers.Embedding(vocab_size, config.embedding_dim, mask_zero=True, name="embedding")(ids)
        x = layers.SpatialDropout1D(config.embedding_dropout, name="embedding_dropout")(x)
        cell = layers.GRU if config.rnn_cell == "gru" else layers.LSTM
        return layers.Bidirectional(cell(config.rnn_units), name=f"bi{config.rnn_cell}")(x)
    if config.kind == "transformer":
        x = layers.Embedding(vocab_size, config.embedding_dim, mask_zero=True, name="embedding")(ids)
        x = PositionEmbedding(config.sequence_length, name="positions")(x)
        x = layers.Dropout(config.embedding_dropout, name="embedding_dropout")(x)
        for i in range(config.num_layers):
            x = _encoder_block(x, config, i)
        return MaskedMeanPool(name="mean_pool")(x)
    raise ValueError(f"unknown model.kind {config.kind!r}")


def _encoder_block(x, config: ModelConfig, i: int):
    """Pre-norm encoder block; padding positions are masked out of attention via the embedding mask."""
    h = layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_norm1")(x)
    h = layers.MultiHeadAttention(config.num_heads, config.embedding_dim // config.num_heads,
                                  dropout=config.embedding_dropout, name=f"block{i}_attention")(h, h)
    x = layers.Add(name=f"block{i}_residual1")([x, h])
    h = layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_norm2")(x)
    h = layers.Dense(config.ff_dim, activation="gelu", name=f"block{i}_ff1")(h)
    h = layers.Dropout(config.embedding_dropout, name=f"block{i}_ff_dropout")(h)
    h = layers.Dense(config.embedding_dim, name=f"block{i}_ff2")(h)
    return layers.Add(name=f"block{i}_residual2")([x, h])
