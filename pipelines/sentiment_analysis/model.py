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
"""
from __future__ import annotations

import keras
import numpy as np
from keras import layers

from deepsuite.pipelines.sentiment_analysis.config import TextModel
from deepsuite.pipelines.sentiment_analysis.layers import MaskedMeanPool, NaiveBayesBag, NaiveBayesNGrams, PositionEmbedding


def takes_raw_strings() -> bool:
    """The exported model takes raw strings only where TextVectorization can run: the TensorFlow backend."""
    return keras.backend.backend() == "tensorflow"


CHAR_STANDARDIZE = "lower"  # punctuation kept: "!", "?", ":)" carry sentiment in character n-grams


def char_vectorizer(config: TextModel, vocabulary: list[str] | None = None, name: str = "char_vectorization"):
    """The string -> multi-hot bag of character 2..`char_ngrams`-grams (TensorFlow only, like TextVectorization)."""
    return layers.TextVectorization(max_tokens=config.char_vocab_size, standardize=CHAR_STANDARDIZE,
                                    split="character", ngrams=tuple(range(2, config.char_ngrams + 1)),
                                    output_mode="multi_hot", vocabulary=vocabulary, name=name)


def build_classifier(vocabulary: list[str], config: TextModel, nb_ratios: np.ndarray | None = None,
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


def _body(ids, vocab_size: int, config: TextModel):
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


def _encoder_block(x, config: TextModel, i: int):
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
