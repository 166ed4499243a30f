"""Labelled texts for sentiment: the VADER snippet sets (offline, from PyPI), IMDB, CSV/TSV, class folders.

Every source ends as texts with binary labels (0 = negative, 1 = positive) and a `label_rule` sentence
saying how the raw labels were mapped, which the report and the data card show. Labels that fit no
rule are an error that lists them, never a guess. `load_data` splits them (from data.split_seed alone),
builds the vocabulary from the training split and returns the splits with the export metadata.

csv:/tsv:/folder: sources may be streamed (`data.stream`, or automatically when large; streaming.py): the
corpus then holds `TextRecords` (where each text lies on disk) instead of strings, the same labels, split,
digest and vocabulary come out, and `fit_data` gives fit() batches read from disk in the arrays' order.
"""
from __future__ import annotations

import hashlib
import html
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deepsuite.common.data.pypi_artifact import pypi_file
from deepsuite.common.data.sources import Source, first_available
from deepsuite.common.data.text_tables import (LabeledTexts, RecordIndex, TextRecords, decode_text,
                                               read_class_folders, read_table)
from deepsuite.common.errors import DataError
from deepsuite.common.pipeline import DatasetInfo, FitData, Split, Splits
from deepsuite.pipelines.sentiment_analysis.config import SentimentAnalysisConfig
from deepsuite.pipelines.sentiment_analysis.contract import SentimentAnalysisMetadata
from deepsuite.pipelines.sentiment_analysis.labels import map_label_codes, map_labels
from deepsuite.pipelines.sentiment_analysis.vectorize import Vectorizer, build_vocabulary, takes_raw_strings

VADER = "vaderSentiment==3.3.2"
VADER_ARCHIVE = "additional_resources/hutto_ICWSM_2014.tar.gz"
VADER_SETS = {  # source name -> (member of the archive, what it is)
    "movie_reviews": ("movieReviewSnippets_GroundTruth.txt", "10,605 movie-review sentences (Pang & Lee)"),
    "tweets": ("tweets_GroundTruth.txt", "4,200 tweets"),
    "amazon_reviews": ("amazonReviewSnippets_GroundTruth.txt", "3,708 Amazon product-review sentences"),
    "nyt_editorials": ("nytEditorialSnippets_GroundTruth.txt", "5,190 New York Times editorial sentences"),
}
CLASS_NAMES = ["negative", "positive"]


@dataclass
class LabeledCorpus:
    """Binary-labelled texts; `split` holds "train"/"test" when the source has its own test set."""

    name: str
    source: str
    texts: list[str] | TextRecords   # TextRecords: streamed, the texts stay on disk
    labels: np.ndarray
    label_rule: str
    split: list[str] = field(default_factory=list)
    card: list[str] = field(default_factory=list)  # data-card lines for the report


@dataclass
class TextSplit(Split):
    """A split whose `x` is what the model takes (strings or ids) and `texts` the raw strings for reports.

    Streamed, both are the same `TextRecords`: `fit_data` and evaluation vectorize them batch by batch."""

    texts: list[str] = field(default_factory=list)


def load_data(config: SentimentAnalysisConfig) -> Splits:
    """The fixed stratified split of `data.source`, the training split's vocabulary and the export metadata."""
    from deepsuite.pipelines.sentiment_analysis import streaming

    data = config.data
    stream = streaming.decide(data)
    corpus = load_corpus(data, stream=stream)
    index = split_indices(corpus, data.val_fraction, data.test_fraction, data.split_seed)
    if data.max_train_samples:
        index["train"] = index["train"][: data.max_train_samples]
        index["val"] = index["val"][: max(10, int(data.max_train_samples * data.val_fraction))]
    if data.max_test_samples:
        index["test"] = index["test"][: data.max_test_samples]
    labels = {k: corpus.labels[idx].astype(np.int8) for k, idx in index.items()}
    raw = takes_raw_strings()
    if stream:   # the texts stay on disk: one read of every split gives the digest and the vocabulary
        texts = {k: corpus.texts[idx] for k, idx in index.items()}
        digest, vocabulary = streaming.digest_and_vocabulary(texts, labels, config.model.vocab_size)
        model_x = lambda t: t  # noqa: E731 - fit_data / evaluation vectorize per batch
    else:
        texts = {k: [corpus.texts[i] for i in idx] for k, idx in index.items()}
        digest = split_digest(texts, labels)
        vocabulary = build_vocabulary(texts["train"], config.model.vocab_size)
        vectorizer = Vectorizer(vocabulary, config.model.sequence_length)
        model_x = (lambda t: np.array(t, dtype=object)) if raw else vectorizer  # noqa: E731
    card = corpus.card + [
        f"split: train {len(texts['train'])} / val {len(texts['val'])} / test {len(texts['test'])}, "
        f"stratified, data.split_seed={data.split_seed}, digest {digest}",
        f"vocabulary: {len(vocabulary)} tokens from the training split (lower-cased, punctuation stripped)"]
    if stream:
        card.append("texts streamed from disk per batch (data.stream); only their places in the files are held")
    info = DatasetInfo(name=corpus.name, source=corpus.source, digest=digest,
                       version=VADER if data.source in VADER_SETS else "")
    metadata = SentimentAnalysisMetadata(class_names=CLASS_NAMES, label_rule=corpus.label_rule, data_card=card,
                                         split_digest=digest, split_seed=data.split_seed,
                                         model_input="text" if raw else "token_ids",
                                         sequence_length=config.model.sequence_length, vocabulary=vocabulary)
    splits = {k: TextSplit(model_x(texts[k]), labels[k], texts[k]) for k in texts}
    return Splits(splits["train"], splits["val"], splits["test"], info, metadata=metadata)


def fit_data(splits: Splits, config: SentimentAnalysisConfig | None = None) -> FitData:
    """Labels as float (n, 1) targets, matching the model's one sigmoid output; streamed splits as batches
    read from disk (streaming.TextBatches) in the order the arrays would have been drawn in."""
    as_target = lambda y: np.asarray(y, dtype="float32")[:, None]  # noqa: E731
    if isinstance(splits.train.x, TextRecords):
        from deepsuite.pipelines.sentiment_analysis.streaming import streamed_fit_data

        return streamed_fit_data(splits, as_target(splits.train.y), as_target(splits.val.y), config)
    return FitData(splits.train.x, as_target(splits.train.y), (splits.val.x, as_target(splits.val.y)))


def texts_of(split: Split) -> list[str] | TextRecords:
    """The raw texts of a split, whether the model takes strings or ids (streamed: the lazy `TextRecords`)."""
    return split.texts if isinstance(split, TextSplit) else [str(t) for t in split.x]


def text_chunks(split: Split, size: int = 2048):
    """(texts, labels) of a split in pieces of `size`, in split order: what counting over a training split
    iterates, so a streamed one is read a piece at a time."""
    texts, labels = texts_of(split), np.asarray(split.y)
    for start in range(0, len(texts), size):
        yield list(texts[start:start + size]), labels[start:start + size]


def load_corpus(data, stream: bool = False) -> LabeledCorpus:
    """Dispatch on `data.source` (a DataConfig section); `stream` (csv/tsv/folder only): texts left on disk."""
    source = data.source
    if source in VADER_SETS:
        return load_vader(source, data.cache_dir)
    if source == "imdb":
        return load_imdb(data)
    kind, sep, location = source.partition(":")
    if sep and kind in ("csv", "tsv", "folder"):
        resolved = f"{kind}:{Path(location).expanduser().resolve()}"
        if kind == "folder":
            name, where = Path(location).name or "folder", f"the class folder names under {location}"
        else:
            name, where = f"{Path(location).stem}", f"column {data.label_column!r} of {Path(location).name}"
        if stream:
            from deepsuite.pipelines.sentiment_analysis.streaming import index_source

            return _from_index(name, resolved, index_source(kind, location, data), data, where)
        if kind == "folder":
            return _from_raw(name, resolved, read_class_folders(location, data.encoding), data, where)
        table = read_table(location, data.text_column, data.label_column, "\t" if kind == "tsv" else None,
                           data.encoding)
        return _from_raw(name, resolved, table, data, where)
    allowed = ", ".join([*VADER_SETS, "imdb", "csv:<file>", "tsv:<file>", "folder:<dir>"])
    raise DataError(f"unknown data.source {source!r} (valid: {allowed})")


# -- the VADER snippet sets ---------------------------------------------------------------------------


def load_vader(name: str, cache_dir: str | None = None) -> LabeledCorpus:
    """id <TAB> mean rating (-4..4, about 20 raters) <TAB> text; label = sign of the mean, zeros dropped."""
    member, what = VADER_SETS[name]
    path = pypi_file(VADER, f"{VADER_ARCHIVE}!{member}", sdist=True, root=Path(cache_dir) if cache_dir else None)
    text = decode_text(path.read_bytes(), f"{VADER} {member}")
    texts, ratings = [], []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        try:
            rating = float(fields[1])
        except (IndexError, ValueError):
            raise DataError(f"{path}: line {number} is not 'id<TAB>rating<TAB>text': {line[:80]!r}; "
                            "delete the cached file to fetch it again") from None
        texts.append(html.unescape("\t".join(fields[2:]).strip()))
        ratings.append(rating)
    ratings = np.asarray(ratings)
    keep = ratings != 0
    dropped = int((~keep).sum())
    rule = (f"label = sign of the mean human rating (-4..4); {dropped} sentence(s) rated exactly 0 dropped")
    card = [f"{what} from the VADER ground-truth files (Hutto & Gilbert, ICWSM 2014; MIT), "
            f"inside the {VADER} source archive on PyPI", rule]
    return LabeledCorpus(name, f"pypi:{VADER}!{VADER_ARCHIVE}!{member}", [t for t, k in zip(texts, keep) if k],
                         (ratings[keep] > 0).astype(np.int8), rule, card=card)


# -- IMDB (online) ------------------------------------------------------------------------------------


def load_imdb(data) -> LabeledCorpus:
    """IMDB reviews (25k train / 25k test): TFDS `imdb_reviews` (raw text), else the Keras download."""
    from deepsuite.common.data.cache import cached_arrays

    def tfds_texts():
        from deepsuite.common.data.tfds_source import load_tfds_supervised

        arrays = load_tfds_supervised("imdb_reviews", data.tfds_data_dir, data.download)
        return {"train_x": [bytes(t).decode("utf-8") for t in arrays["train_x"]],
                "train_y": arrays["train_y"], "test_x": [bytes(t).decode("utf-8") for t in arrays["test_x"]],
                "test_y": arrays["test_y"]}

    def keras_texts():
        if not data.download:
            raise DataError("data.download is off")
        return _keras_imdb_texts()

    def cached(build, tag):
        def prepare():
            raw = build()
            return {**pack_texts("train", raw["train_x"]), **pack_texts("test", raw["test_x"]),
                    "train_y": np.asarray(raw["train_y"]), "test_y": np.asarray(raw["test_y"])}

        def load():
            arrays = cached_arrays(f"imdb-{tag}", {"source": tag}, prepare,
                                   Path(data.cache_dir) if data.cache_dir else None)[0]
            return {"train_x": unpack_texts("train", arrays), "test_x": unpack_texts("test", arrays),
                    "train_y": arrays["train_y"], "test_y": arrays["test_y"]}
        return load

    arrays, source = first_available("imdb", [
        Source("tfds:imdb_reviews", cached(tfds_texts, "tfds"), "needs the internet or a prepared tfds_data_dir"),
        Source("keras:imdb", cached(keras_texts, "keras"), "needs the internet"),
    ])
    texts = [t.replace("<br />", " ") for t in arrays["train_x"] + arrays["test_x"]]
    labels = np.concatenate([arrays["train_y"], arrays["test_y"]]).astype(np.int8)
    split = ["train"] * len(arrays["train_x"]) + ["test"] * len(arrays["test_x"])
    rule = "IMDB's own labels (rating <= 4 negative, >= 7 positive)"
    card = [f"IMDB movie reviews (Maas et al., 2011) via {source.name}", rule]
    return LabeledCorpus("imdb", source.name, texts, labels, rule, split, card)


def pack_texts(prefix: str, texts: list[str]) -> dict[str, np.ndarray]:
    """Texts as one UTF-8 byte array plus offsets: compact in an .npz, unlike fixed-width string arrays."""
    encoded = [t.encode("utf-8") for t in texts]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(e) for e in encoded])
    return {f"{prefix}_blob": np.frombuffer(b"".join(encoded), dtype=np.uint8), f"{prefix}_offsets": offsets}


def unpack_texts(prefix: str, arrays: dict[str, np.ndarray]) -> list[str]:
    blob, offsets = arrays[f"{prefix}_blob"].tobytes(), arrays[f"{prefix}_offsets"]
    return [blob[a:b].decode("utf-8") for a, b in zip(offsets[:-1], offsets[1:])]


def _keras_imdb_texts() -> dict[str, np.ndarray]:
    """Keras ships IMDB as word ids; map them back to (lower-cased, punctuation-free) words."""
    import keras

    try:
        (train_x, train_y), (test_x, test_y) = keras.datasets.imdb.load_data(index_from=3)
        index = keras.datasets.imdb.get_word_index()
    except Exception as exc:  # noqa: BLE001 - urllib/OSError/HTTP errors, all mean "could not download"
        raise DataError(f"Keras IMDB download failed ({type(exc).__name__}: {str(exc)[:120]})") from None
    words = {i + 3: w for w, i in index.items()}
    decode = lambda seqs: [" ".join(words.get(i, "") for i in s if i >= 3) for s in seqs]  # noqa: E731
    return {"train_x": decode(train_x), "train_y": np.asarray(train_y), "test_x": decode(test_x),
            "test_y": np.asarray(test_y)}


# -- user files: labels mapped by explicit rules --------------------------------------------------------


def _from_raw(name: str, source: str, raw: LabeledTexts, data, where: str) -> LabeledCorpus:
    texts = list(raw.texts)
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if empty and not data.skip_empty_texts:
        rows = ", ".join(raw.origin[i] for i in empty[:5])
        raise DataError(f"{len(empty)} empty text(s) in {source} (first: {rows}); remove them or set "
                        "data.skip_empty_texts=true")
    labels, keep, rule = map_labels(raw.labels, data, where, raw.origin)
    keep &= np.array([bool(t.strip()) for t in texts], dtype=bool)
    card = [f"{name}: {len(texts)} texts from {source}", rule]
    if empty:
        card.append(f"{len(empty)} empty text(s) skipped (data.skip_empty_texts)")
    split = [s for s, k in zip(raw.split, keep) if k] if raw.split and any(raw.split) else []
    return LabeledCorpus(name, source, [t for t, k in zip(texts, keep) if k], labels[keep], rule, split, card)


def _from_index(name: str, source: str, index: RecordIndex, data, where: str) -> LabeledCorpus:
    """`_from_raw` on an index of texts left on disk: the same checks, rules, messages and kept rows."""
    empty = np.flatnonzero(index.blank)
    if len(empty) and not data.skip_empty_texts:
        rows = ", ".join(index.origin(int(i)) for i in empty[:5])
        raise DataError(f"{len(empty)} empty text(s) in {source} (first: {rows}); remove them or set "
                        "data.skip_empty_texts=true")
    labels, keep, rule = map_label_codes(index.label_values, index.label_codes, data, where, index.origin)
    keep &= ~index.blank
    card = [f"{name}: {len(index)} texts from {source}", rule]
    if len(empty):
        card.append(f"{len(empty)} empty text(s) skipped (data.skip_empty_texts)")
    split = [s for s, k in zip(index.split, keep) if k] if index.split and any(index.split) else []
    return LabeledCorpus(name, source, TextRecords(index, np.flatnonzero(keep)), labels[keep], rule, split, card)


# -- the fixed split ---------------------------------------------------------------------------------


def split_indices(corpus: LabeledCorpus, val_fraction: float, test_fraction: float, seed: int
                  ) -> dict[str, np.ndarray]:
    """Stratified train/val/test indices from `seed` alone; a source's own test set is kept as is."""
    rng = np.random.default_rng(seed)
    own_test = bool(corpus.split) and "test" in corpus.split
    pool = np.array([i for i, s in enumerate(corpus.split) if s != "test"]) if own_test else np.arange(len(corpus.texts))
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for label in (0, 1):
        members = pool[corpus.labels[pool] == label]
        members = members[rng.permutation(len(members))]
        n_test = 0 if own_test else int(round(len(members) * test_fraction))
        n_val = int(round(len(members) * val_fraction))
        parts["test"].append(members[:n_test])
        parts["val"].append(members[n_test:n_test + n_val])
        parts["train"].append(members[n_test + n_val:])
    out = {k: rng.permutation(np.concatenate(v)) for k, v in parts.items()}
    if own_test:
        out["test"] = np.array([i for i, s in enumerate(corpus.split) if s == "test"])
    for name, idx in out.items():
        if len(idx) == 0 or len(set(corpus.labels[idx].tolist())) < 2:
            raise DataError(f"{corpus.name}: the {name} split would lack a class ({len(idx)} texts); "
                            "a dataset needs enough positive and negative examples")
    return out


def split_digest(texts: dict[str, list[str]], labels: dict[str, np.ndarray]) -> str:
    """A content hash of the split (which texts, which labels, in which split), logged with the run."""
    h = hashlib.sha256()
    for name in sorted(texts):
        h.update(name.encode())
        for text, label in zip(texts[name], labels[name]):
            h.update(f"{int(label)}\t{text}\n".encode("utf-8"))
    return h.hexdigest()[:16]
