"""Ratings -> train/validation/test, id vocabularies, side-feature matrices, and the id arrays the model takes.

Two splits, selectable with data.split:
- random: a seeded `test_fraction` of all ratings is the test set (the literature's 80/20), and `val_fraction` of
  the rest is held out for validation;
- temporal (leave-last-out, what a product does): each user's last rating is the test, the second-to-last the
  validation. Order is by timestamp, ties broken by item id (so among ratings sharing the user's last
  timestamp the highest item id is the test item; MovieLens 100K has 415 such users), or by file order when
  the source has no timestamps. Users with one rating stay in training; with two, there is no validation row.

Vocabularies cover every user and item in the data (index 0 is "unknown id"): an item or user that has no
training rating (cold start) keeps a zero embedding and is scored from its biases/side features, and the
ranking still covers the full catalogue. Ids never seen at all map to index 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from deepsuite.common.errors import DataError
from deepsuite.common.pipeline import Splits
from deepsuite.pipelines.recommendation.ratings import Ratings


@dataclass
class Interactions:
    """One split in index space (1..n; 0 is unknown) with the raw ids kept for the model's inputs."""

    users: np.ndarray    # int32 indices
    items: np.ndarray
    ratings: np.ndarray  # float32
    raw_users: np.ndarray
    raw_items: np.ndarray
    times: np.ndarray      # int64 timestamps, or row numbers in the file when the source has none

    def __len__(self) -> int:
        return len(self.ratings)


@dataclass
class Catalogue:
    """Everything beyond the splits that training, evaluation and `recommend` need."""

    user_vocab: np.ndarray            # raw ids, sorted; index = position + 1
    item_vocab: np.ndarray
    train: Interactions
    val: Interactions
    test: Interactions
    titles: list[str]                 # by item index (0: "")
    user_features: np.ndarray | None  # (n_users + 1, n_tokens) row-normalised multi-hot, or None
    item_features: np.ndarray | None
    feature_names: dict[str, list[str]]
    rating_range: tuple[float, float]
    split: str
    notes: list[str] = field(default_factory=list)
    streamed: bool = False            # splits are memmapped columns (stream_splits.py), raw ids computed lazily

    @property
    def num_users(self) -> int:
        return len(self.user_vocab)

    @property
    def num_items(self) -> int:
        return len(self.item_vocab)

    def seen_matrix(self, include_val: bool = True) -> np.ndarray:
        """(users+1, items+1) bool: what each user rated before the test (excluded from rankings)."""
        seen = np.zeros((self.num_users + 1, self.num_items + 1), dtype=bool)
        parts = [self.train, self.val] if include_val else [self.train]
        for part in parts:
            seen[part.users, part.items] = True
        seen[:, 0] = True  # the unknown-item slot is never recommended
        return seen

    def popularity(self) -> np.ndarray:
        """Training interactions per item index (train + validation), the popularity baseline's score."""
        counts = np.bincount(np.concatenate([self.train.items, self.val.items]), minlength=self.num_items + 1)
        return counts.astype("float64")


@dataclass
class RatingSplits(Splits):
    """Splits whose x are {"user_id", "item_id"} model inputs and y the ratings, plus the catalogue."""

    catalogue: Catalogue | None = None


def index_of(vocab: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """Raw ids -> 1-based positions in the sorted `vocab`, 0 when absent (NumPy twin of IdLookup)."""
    raw = np.asarray(raw)
    if vocab.dtype.kind in "iu" and raw.dtype.kind not in "iu":
        try:
            raw = raw.astype(vocab.dtype)
        except (TypeError, ValueError):
            return np.zeros(raw.shape, dtype="int32")
    elif vocab.dtype.kind not in "iu":
        raw = raw.astype(str).astype(object)
    position = np.searchsorted(vocab, raw)
    clipped = np.minimum(position, len(vocab) - 1)
    found = vocab[clipped] == raw
    return np.where(found, position + 1, 0).astype("int32")


# ------------------------------------------------------------------------------------------------
# Ids: raw ints (IdLookup in the model), raw strings (StringLookup, TensorFlow) or indices (strings elsewhere)

PREDICT_BATCH = 65536  # (user, item) pairs per predict call when a model scores whole catalogues


def choose_id_mode(catalogue: Catalogue) -> str:
    import keras

    if catalogue.user_vocab.dtype.kind in "iu" and catalogue.item_vocab.dtype.kind in "iu":
        return "int"
    return "string" if keras.backend.backend() == "tensorflow" else "index"


def model_vocab(cat: Catalogue, id_mode: str):
    """The vocabularies the model's id lookups are built on."""
    if id_mode == "index":
        return np.arange(1, cat.num_users + 1), np.arange(1, cat.num_items + 1)
    if id_mode == "string":
        return cat.user_vocab.astype(str), cat.item_vocab.astype(str)
    return cat.user_vocab, cat.item_vocab


def model_inputs(cat: Catalogue, id_mode: str, users: np.ndarray, items: np.ndarray) -> dict[str, np.ndarray]:
    return raw_or_index(id_mode, cat.user_vocab, cat.item_vocab, users, items)


def raw_or_index(id_mode: str, user_vocab, item_vocab, users: np.ndarray, items: np.ndarray) -> dict[str, np.ndarray]:
    """Index arrays (1-based) -> what the model takes: raw int ids, raw strings, or the indices themselves."""
    return {"user_id": model_ids(id_mode, user_vocab, users), "item_id": model_ids(id_mode, item_vocab, items)}


def model_ids(id_mode: str, vocab, indices: np.ndarray) -> np.ndarray:
    """One column of index (1-based) -> what the model takes for it."""
    indices = np.asarray(indices)
    if id_mode == "index":
        return indices.astype("int32")
    ids = np.asarray(vocab)[indices - 1]
    if id_mode == "string":
        return ids.astype(str).astype(object)  # object arrays of str: Keras refuses NumPy's fixed-width unicode
    return ids.astype("int32")


def fit_interactions(cat: Catalogue, kind: str) -> Interactions:
    """What the model trains on: train, or for the two-tower (no validation loss) train and validation."""
    if kind != "two_tower" or not len(cat.val):
        return cat.train
    if cat.streamed:  # memmapped splits: a view over both, read per batch
        return Interactions(*(Stacked([getattr(cat.train, n), getattr(cat.val, n)])
                              for n in ("users", "items", "ratings", "raw_users", "raw_items", "times")))
    join = lambda name: np.concatenate([getattr(cat.train, name), getattr(cat.val, name)])  # noqa: E731
    return Interactions(*(join(n) for n in ("users", "items", "ratings", "raw_users", "raw_items", "times")))


class Stacked:
    """Columns one after the other (train then validation), as `np.concatenate` would give them, read on demand."""

    def __init__(self, parts: list):
        self.parts = parts
        self.bounds = np.cumsum([0] + [len(p) for p in parts])

    @property
    def dtype(self):
        return self.parts[0].dtype

    @property
    def shape(self) -> tuple[int]:
        return (int(self.bounds[-1]),)

    def __len__(self) -> int:
        return int(self.bounds[-1])

    def __getitem__(self, rows):
        rows = np.arange(len(self))[rows] if isinstance(rows, slice) else np.asarray(rows)
        part = np.searchsorted(self.bounds, rows, side="right") - 1
        pieces = [np.asarray(p[rows[part == k] - self.bounds[k]]) for k, p in enumerate(self.parts)]
        out = np.empty(len(rows), dtype=np.result_type(*pieces))
        for k, piece in enumerate(pieces):
            out[part == k] = piece
        return out

    def __array__(self, dtype=None, copy=None):
        values = np.concatenate([np.asarray(p[:]) for p in self.parts])
        return values if dtype is None else values.astype(dtype)


# ------------------------------------------------------------------------------------------------
# Splitting


def split_rows(split: str, size: int, users: np.ndarray, items: np.ndarray, times: np.ndarray | None,
               test_fraction: float, val_fraction: float, seed: int, notes: list[str]):
    """(train, val, test) row numbers of `data.split` over `size` ratings (users/items as indices), with the
    sentence the data card shows appended to `notes`; shared by the in-memory and the streamed split."""
    if split == "random":
        rows = _random(size, test_fraction, val_fraction, seed)
        notes.append(f"random split (seed {seed}): {test_fraction:.0%} of ratings for test, {val_fraction:.0%} of "
                     "the rest for validation")
    elif split == "temporal":
        rows = _leave_last_out(users, items, times, val_fraction > 0)
        notes.append("temporal split: each user's last rating is the test, the one before it validation; ties at "
                     "the same timestamp are broken by item id (the highest id counts as the latest)")
        if times is None:
            notes.append("temporal split without timestamps: file order is the time order")
    else:
        raise DataError(f"data.split={split!r}: use random or temporal")
    return rows


def split_ratings(ratings: Ratings, split: str, test_fraction: float, val_fraction: float, seed: int,
                  max_users: int | None = None) -> Catalogue:
    notes = list(ratings.notes)
    users, items, values, times = ratings.users, ratings.items, ratings.ratings, ratings.timestamps
    if max_users:
        kept = np.unique(users)[:max_users]
        mask = np.isin(users, kept)
        users, items, values = users[mask], items[mask], values[mask]
        times = None if times is None else times[mask]
        notes.append(f"kept the first {len(kept)} users by id ({int(mask.sum())} ratings)")
    user_vocab, item_vocab = _sorted_unique(users), _sorted_unique(items)
    u, i = index_of(user_vocab, users), index_of(item_vocab, items)
    train, val, test = split_rows(split, len(values), u, i, times, test_fraction, val_fraction, seed, notes)
    if not len(test) or not len(train):
        raise DataError(f"{ratings.source}: the {split} split left an empty train or test set "
                        f"({len(values)} ratings, {len(user_vocab)} users); more ratings are needed")
    when = np.arange(len(values), dtype="int64") if times is None else times
    part = lambda rows: Interactions(u[rows], i[rows], values[rows], users[rows], items[rows], when[rows])  # noqa: E731
    catalogue = Catalogue(user_vocab, item_vocab, part(train), part(val), part(test),
                          titles=[""] + [str(ratings.titles.get(raw, raw)) for raw in item_vocab],
                          user_features=None, item_features=None, feature_names={},
                          rating_range=(float(values.min()), float(values.max())), split=split, notes=notes)
    _add_side_features(catalogue, ratings)
    _note_cold_start(catalogue)
    return catalogue


def _sorted_unique(ids: np.ndarray) -> np.ndarray:
    unique = np.unique(ids)
    return unique.astype("int64") if unique.dtype.kind in "iu" else unique.astype(str).astype(object)


def _random(n: int, test_fraction: float, val_fraction: float, seed: int):
    order = np.random.default_rng(seed).permutation(n)
    n_test = max(1, int(round(n * test_fraction)))
    rest = order[n_test:]
    n_val = int(round(len(rest) * val_fraction))
    return np.sort(rest[n_val:]), np.sort(rest[:n_val]), np.sort(order[:n_test])


def _leave_last_out(u: np.ndarray, i: np.ndarray, times: np.ndarray | None, with_val: bool):
    when = np.arange(len(u)) if times is None else times
    order = np.lexsort((i, when, u))            # by user, then time, then item id
    su = u[order]
    is_last = np.r_[su[1:] != su[:-1], True]
    is_first = np.r_[True, su[1:] != su[:-1]]
    count = np.diff(np.r_[np.flatnonzero(is_first), len(su)])
    per_row_count = np.repeat(count, count)
    test = is_last & (per_row_count >= 2)
    val = np.r_[is_last[1:], False] & ~is_last & (per_row_count >= 3) & with_val
    train = ~(test | val)
    return np.sort(order[train]), np.sort(order[val]), np.sort(order[test])


def _add_side_features(catalogue: Catalogue, ratings: Ratings) -> None:
    """Multi-hot genre / user-attribute matrices by index (row-normalised), when the data has them."""
    for kind, vocab, tokens in (("item", catalogue.item_vocab, ratings.genres),
                                ("user", catalogue.user_vocab, ratings.user_attributes)):
        if not tokens:
            continue
        names = sorted({t for raw in vocab for t in tokens.get(raw, ())})
        if not names:
            continue
        column = {name: k for k, name in enumerate(names)}
        matrix = np.zeros((len(vocab) + 1, len(names)), dtype="float32")
        for row, raw in enumerate(vocab, start=1):
            for token in tokens.get(raw, ()):
                matrix[row, column[token]] = 1.0
        matrix /= np.maximum(matrix.sum(axis=1, keepdims=True), 1.0)
        setattr(catalogue, f"{kind}_features", matrix)
        catalogue.feature_names[kind] = names


def _note_cold_start(catalogue: Catalogue) -> None:
    trained_users = np.zeros(catalogue.num_users + 1, bool)
    trained_items = np.zeros(catalogue.num_items + 1, bool)
    trained_users[catalogue.train.users] = True
    trained_items[catalogue.train.items] = True
    test = catalogue.test
    cold_users = int((~trained_users[test.users]).sum())
    cold_items = int((~trained_items[test.items]).sum())
    if cold_users or cold_items:
        catalogue.notes.append(
            f"cold start: {cold_users} test ratings by users and {cold_items} of items with no training rating; "
            "they are scored from biases/side features (zero embeddings), rankings for such users use popularity")
