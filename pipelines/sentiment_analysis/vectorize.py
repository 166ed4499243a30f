"""Text -> token ids, in plain Python, exactly as Keras' `TextVectorization` does it by default.

Why both: on TensorFlow the exported model starts with a `TextVectorization` layer so it takes raw
strings; on JAX/PyTorch without TensorFlow that layer cannot run, so texts are tokenised here, outside
the model, with the same vocabulary and the same rules (lower-case, strip ASCII punctuation, split on
whitespace, keep the first `sequence_length` tokens, 0 = padding, 1 = [UNK]). A test checks that both
give identical ids. The vocabulary is built here in both cases, so it does not depend on the backend.

The n-gram hashing below mirrors `layers.HashedNGrams` (NumPy here, keras.ops there); the pipeline uses
it to count n-grams per class for the Naive Bayes log-count ratios of the n-gram branch.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Iterable, Sequence

import numpy as np

PAD, OOV = "", "[UNK]"
# Keras' DEFAULT_STRIP_REGEX (keras/src/layers/preprocessing/text_vectorization.py)
STRIP_PUNCTUATION = re.compile(r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']')
WHITESPACE = re.compile(r"[ \t\n\r\v\f]+")  # what tf.strings.split splits on
HASH_MULTIPLIER = 7919  # prime; (h * 7919) stays inside int32 for h < 2**18 buckets


def takes_raw_strings() -> bool:
    """The exported model takes raw strings only where TextVectorization can run: the TensorFlow backend."""
    import keras

    return keras.backend.backend() == "tensorflow"


def tokenize(text: str) -> list[str]:
    return [t for t in WHITESPACE.split(STRIP_PUNCTUATION.sub("", text.lower())) if t]


def build_vocabulary(texts: Iterable[str], vocab_size: int) -> list[str]:
    """The `vocab_size - 2` most frequent tokens (ties alphabetical), after the padding and [UNK] entries."""
    return vocabulary_from_counts(Counter(token for text in texts for token in tokenize(text)), vocab_size)


def vocabulary_from_counts(counts: Counter, vocab_size: int) -> list[str]:
    """`build_vocabulary` from token counts gathered elsewhere (a streamed split, counted a piece at a time)."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [PAD, OOV] + [token for token, _ in ranked[: vocab_size - 2]]


class Vectorizer:
    """Texts -> int32 ids of shape (n, sequence_length), the Python twin of the model's TextVectorization."""

    def __init__(self, vocabulary: Sequence[str], sequence_length: int):
        if list(vocabulary[:2]) != [PAD, OOV]:
            raise ValueError("vocabulary must start with the padding token '' and '[UNK]'")
        self.vocabulary = list(vocabulary)
        self.sequence_length = sequence_length
        self.index = {token: i for i, token in enumerate(self.vocabulary)}

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        ids = np.zeros((len(texts), self.sequence_length), dtype=np.int32)
        for row, text in enumerate(texts):
            tokens = [self.index.get(t, 1) for t in tokenize(text)][: self.sequence_length]
            ids[row, : len(tokens)] = tokens
        return ids

    def known_fraction(self, text: str) -> float:
        tokens = tokenize(text)
        return sum(t in self.index for t in tokens) / len(tokens) if tokens else 0.0


def hashed_ngrams(ids: np.ndarray, n: int, buckets: int) -> np.ndarray:
    """(batch, L) ids -> (batch, L - n + 1) n-gram ids in 1..buckets-1; 0 where the n-gram touches padding."""
    length = ids.shape[1]
    parts = [ids[:, i: length - n + 1 + i].astype(np.int64) for i in range(n)]
    h = parts[0] % (buckets - 1)
    valid = parts[0] > 0
    for part in parts[1:]:
        h = ((h * HASH_MULTIPLIER) % (buckets - 1) + part) % (buckets - 1)
        valid &= part > 0
    return ((h + 1) * valid).astype(np.int32)


def ngram_features(ids: np.ndarray, max_n: int, vocab_size: int, buckets: int) -> np.ndarray:
    """Unigram ids, then each n-gram's hashed id offset past the vocabulary: one id space of the NB branch."""
    grams = [ids] if max_n >= 1 else []
    for n in range(2, max_n + 1):
        hashed = hashed_ngrams(ids, n, buckets)
        grams.append(np.where(hashed > 0, hashed + vocab_size + (n - 2) * buckets, 0).astype(np.int32))
    return np.concatenate(grams, axis=1)


def feature_space(max_n: int, vocab_size: int, buckets: int) -> int:
    return vocab_size + max(0, max_n - 1) * buckets


def nb_log_ratios(ids: np.ndarray, labels: np.ndarray, max_n: int, vocab_size: int, buckets: int,
                  alpha: float = 1.0) -> np.ndarray:
    """Naive Bayes log-count ratio per feature, log(p(f|pos)/p(f|neg)) on binary presence (Wang & Manning 2012).

    Padding (id 0) and [UNK] (id 1) get 0, so they never sway a prediction.
    """
    counts = nb_counts(ids, labels, max_n, vocab_size, buckets)
    counts[:, :2] = 0
    return ratios_from_counts(counts, alpha, ignored=2)


def nb_counts(ids: np.ndarray, labels: np.ndarray, max_n: int, vocab_size: int, buckets: int) -> np.ndarray:
    """(2, features) documents per class holding each feature: additive, so a split can be counted in pieces."""
    size = feature_space(max_n, vocab_size, buckets)
    features = ngram_features(ids, max_n, vocab_size, buckets)
    counts = np.zeros((2, size), dtype=np.float64)
    labels = np.asarray(labels).reshape(-1)
    for label in (0, 1):
        rows = features[labels == label]
        for row in rows:
            present = np.unique(row)
            counts[label, present] += 1
    return counts


def ratios_from_counts(counts: np.ndarray, alpha: float = 1.0, ignored: int = 0) -> np.ndarray:
    """(2, features) per-class document counts -> smoothed NB log-count ratios; the first `ignored` ids get 0."""
    counts = np.asarray(counts, dtype=np.float64).copy()
    counts[:, :ignored] = 0
    size = counts.shape[1]
    pos = (counts[1] + alpha) / (counts[1].sum() + alpha * size)
    neg = (counts[0] + alpha) / (counts[0].sum() + alpha * size)
    ratios = np.log(pos) - np.log(neg)
    ratios[:ignored] = 0.0
    return ratios.astype(np.float32)
