"""Streamed csv:/tsv:/folder: sources: texts stay on disk, batches are read and vectorized as training asks.

A review table of a few GB is about ten times that as Python strings, token ids and the copies the readers
make on the way (`TEXT_MEMORY_FACTOR`). Streaming keeps an index instead (`text_tables.RecordIndex`: per
text its file, byte offset, length, line, label code; about 40 bytes a text) built by one pass that checks
every record as the in-memory readers do (strict decoding, field counts, the label rules of data.py, empty
texts), so a bad row or file is named before training with the same message.

What stays the same as in memory, so the same data gives the same run:
- the split: `split_indices` sees the same labels (and aclImdb's own train/test), so the indices match;
- the digest and the vocabulary: one read of every split in split order (`digest_and_vocabulary`), hashing
  what `split_digest` hashes and counting the training tokens as `build_vocabulary` does;
- the batches: `TextBatches` reads a batch's rows in the (seed, epoch) order the arrays are drawn in
  (`streamed_batches.epoch_order`: NumPy's permutation, or TensorFlow's stateless shuffle on TensorFlow, as
  `tf_batches` shuffles arrays there), rows sorted within a batch; validation in file order by Keras's
  default array batch (32); prediction by evaluation's 512. Each batch is what the model takes: token ids
  from `Vectorizer`, or the UTF-8 strings themselves when the model starts with TextVectorization.

The VADER sets and IMDB always load into memory: the VADER files are at most 10,605 sentences (about 1 MB)
inside a packaged archive, and IMDB arrives whole from TFDS/Keras (a 50,000-review cache of about 65 MB),
so there is nothing on disk to index per record and nothing to gain.
"""
from __future__ import annotations

import hashlib
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from deepsuite.common.data.image_files import choose_streaming
from deepsuite.common.data.text_tables import (RecordIndex, TextRecords, class_folder_files, index_class_folders,
                                               index_table, streamable_encoding)
from deepsuite.common.errors import DataError
from deepsuite.common.pipeline import FitData, Splits
from deepsuite.common.streamed_batches import StreamedBatches
from deepsuite.pipelines.sentiment_analysis.vectorize import Vectorizer, tokenize, vocabulary_from_counts

STREAMED_KINDS = ("csv", "tsv", "folder")
# Memory of a text source loaded as the in-memory path does, per byte of the files. Measured (tracemalloc) on a
# 23.5 MiB CSV of the VADER movie sentences (211,360 rows of ~110 bytes): `read_table` alone peaks at 8.5x, as
# the file's bytes, its decoded string, the per-row strings and each row's label and origin strings (~50-byte
# Python objects each) are alive at once; token ids add sequence_length x 4 bytes a row (256 at the default
# 64, about 2x for such sentences). Longer texts (reviews of ~1.3 kB) cost less per byte, so 10x errs on the
# safe side for sentences and on the generous side for reviews.
TEXT_MEMORY_FACTOR = 10
VALIDATION_BATCH = 32   # what fit() batches validation arrays by when it is given no batch_size (the runner)
PREDICT_BATCH = 512     # evaluation.evaluate's predict batch


def decide(data) -> bool:
    """Whether `data.source` is streamed: `data.stream` when set, else when its estimated in-memory size is
    over a share of the available memory (`image_files.choose_streaming`, DEEPSUITE_MEMORY_BUDGET included)."""
    kind, sep, location = data.source.partition(":")
    if not (sep and kind in STREAMED_KINDS):
        if data.stream:
            print(f"note: data.stream applies to csv:/tsv:/folder: sources; {data.source!r} is loaded into memory "
                  "(it is small or arrives whole)", file=sys.stderr)
        return False
    path = Path(location).expanduser()
    if kind == "folder":
        on_disk = sum(os.stat(f).st_size for f, _, _ in class_folder_files(path))
    elif path.is_file():
        on_disk = path.stat().st_size
    else:
        raise DataError(f"table file not found: {path}")
    what = f"{data.source} ({on_disk / 2**20:.1f} MiB of text, about {TEXT_MEMORY_FACTOR}x that in memory)"
    if streamable_encoding(data.encoding):
        return choose_streaming(data.stream, TEXT_MEMORY_FACTOR * on_disk, what)
    if data.stream:
        raise DataError(f"data.encoding={data.encoding!r} cannot be streamed (its line ends are not single ASCII "
                        "bytes); re-save the file as UTF-8, or set data.stream=false")
    if choose_streaming(None, TEXT_MEMORY_FACTOR * on_disk, what):
        print(f"warning: {what} would be streamed, but data.encoding={data.encoding!r} cannot be; loading it "
              "into memory (re-save it as UTF-8 to stream it)", file=sys.stderr)
    return choose_streaming(False, TEXT_MEMORY_FACTOR * on_disk, what)


def index_source(kind: str, location: str, data) -> RecordIndex:
    """The checked index of a csv:/tsv:/folder: source (text_tables.index_table / index_class_folders)."""
    if kind == "folder":
        return index_class_folders(location, data.encoding)
    return index_table(location, data.text_column, data.label_column, "\t" if kind == "tsv" else None,
                       data.encoding)


def digest_and_vocabulary(texts: dict[str, TextRecords], labels: dict[str, np.ndarray], vocab_size: int
                          ) -> tuple[str, list[str]]:
    """`data.split_digest(texts, labels)` and `build_vocabulary(texts["train"], vocab_size)` in one read."""
    h, counts = hashlib.sha256(), Counter()
    for name in sorted(texts):
        h.update(name.encode())
        for text, label in zip(texts[name], labels[name]):
            h.update(f"{int(label)}\t{text}\n".encode("utf-8"))
            if name == "train":
                counts.update(tokenize(text))
    return h.hexdigest()[:16], vocabulary_from_counts(counts, vocab_size)


def model_input(metadata) -> Any:
    """texts -> what the model takes: UTF-8 strings (TextVectorization inside it) or token ids."""
    if metadata.model_input == "text":
        return lambda texts: np.array([t.encode("utf-8") for t in texts], dtype=object)
    return Vectorizer(metadata.vocabulary, metadata.sequence_length)


class TextBatches(StreamedBatches):
    """(inputs, targets) batches of texts on disk; `shuffle`: the (seed, epoch) order of the in-memory arrays,
    else file order (validation, prediction: `targets` None gives (inputs,) batches). `encode` turns a list of
    texts into the model's input (`model_input`); on TensorFlow `dataset` carries string inputs too."""

    def __init__(self, texts: TextRecords, targets: Any, batch_size: int, encode, seed: int = 0,
                 shuffle: bool = True, workers: int | None = None, max_queue_size: int = 8):
        super().__init__(len(texts), batch_size, seed, shuffle, workers, max_queue_size)
        self.texts, self.targets, self.encode = texts, targets, encode

    def __getitem__(self, index: int):
        rows = self.rows(index)
        x = self.encode(self.texts[rows].read())
        return (x,) if self.targets is None else (x, self.targets[rows])


def streamed_fit_data(splits: Splits, train_y: np.ndarray, val_y: np.ndarray, config) -> FitData:
    """fit()'s training batches (seeded order) and validation batches (file order), read from disk."""
    if config is None:
        raise ValueError("streamed splits need the run config for their batches (fit_data(splits, config))")
    encode, workers = model_input(splits.metadata), config.data.stream_workers
    train = TextBatches(splits.train.x, train_y, config.train.batch_size, encode, config.seed, workers=workers)
    val = TextBatches(splits.val.x, val_y, VALIDATION_BATCH, encode, shuffle=False, workers=workers)
    return FitData(train, validation_data=getattr(val, "dataset", val))   # tf.data on TensorFlow


def prediction_input(x: Any, metadata, batch_size: int = PREDICT_BATCH) -> tuple[Any, dict]:
    """(x, predict() keyword arguments): streamed texts become in-order batches, arrays stay as they are."""
    if isinstance(x, TextRecords):
        batches = TextBatches(x, None, batch_size, model_input(metadata), shuffle=False)
        return getattr(batches, "dataset", batches), {}
    return x, {"batch_size": batch_size}
