"""The split catalogue of a streamed ratings file: the in-memory splits, computed on memmapped index columns.

`split_store` gives the `Catalogue` `splits.split_ratings` gives for the same file, seed and settings (the same
rows in each split, in the same order, the same vocabularies, titles, side features and notes), but its
`Interactions` hold memmapped int32/float32/int64 columns written into the store's cache folder, and their raw
ids are `RawIds`: `vocab[index - 1]` computed for the rows asked for, never one Python object per row.

The split itself runs the in-memory path's own `splits.split_rows` on the
index columns, which is why the splits are the same: index order is raw-id order (the vocabularies are sorted).

Peak memory (n rows in the file, m kept by data.max_users): with max_users, the kept rows' columns are copied
(20 bytes a row); the random split draws a permutation of m (8 bytes a row) and sorts its three parts (8 more);
the temporal split's lexsort of (user, time, item) takes ~40 bytes a row at its peak (order, sorted users,
masks, per-row counts). Each split's columns are then gathered COPY_ROWS rows at a time into files, so training
and evaluation read pages of the memmaps, not arrays in memory.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from deepsuite.common.data.cache import key_digest
from deepsuite.common.errors import DataError
from deepsuite.pipelines.recommendation.rating_store import COLUMNS, COPY_ROWS, RatingStore, column
from deepsuite.pipelines.recommendation.splits import (Catalogue, Interactions, _add_side_features, _note_cold_start,
                                                       model_ids, split_rows)

PARTS = ("train", "val", "test")
FIELDS = ("users", "items", "ratings", "times")


class RawIds:
    """The raw ids of index column `indices` (`vocab[indices - 1]`), computed for the rows indexed."""

    def __init__(self, vocab: np.ndarray, indices):
        self.vocab, self.indices = vocab, indices

    @property
    def dtype(self):
        return self.vocab.dtype

    @property
    def shape(self) -> tuple[int]:
        return (len(self.indices),)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, rows):
        return self.vocab[np.asarray(self.indices[rows]) - 1]

    def __array__(self, dtype=None, copy=None):
        values = self[:]
        return values if dtype is None else values.astype(dtype)


class ModelIds(RawIds):
    """One model input of streamed rows: what `splits.model_ids` gives for the rows indexed."""

    def __init__(self, id_mode: str, vocab: np.ndarray, indices):
        super().__init__(vocab, indices)
        self.id_mode = id_mode

    @property
    def dtype(self):
        return np.dtype(object) if self.id_mode == "string" else np.dtype("int32")

    def __getitem__(self, rows):
        return model_ids(self.id_mode, self.vocab, self.indices[rows])


def streamed_inputs(cat: Catalogue, id_mode: str, users, items) -> dict:
    """The model's {"user_id", "item_id"} of streamed rows, computed per batch (model_inputs' lazy twin)."""
    return {"user_id": ModelIds(id_mode, cat.user_vocab, users), "item_id": ModelIds(id_mode, cat.item_vocab, items)}


def split_store(store: RatingStore, split: str, test_fraction: float, val_fraction: float, seed: int,
                max_users: int | None = None, titles: dict | None = None, genres: dict | None = None) -> Catalogue:
    """`splits.split_ratings` for a streamed file (see the module docstring); each split's columns are cached."""
    notes = list(store.notes)
    users, items, values, times = store.users, store.items, store.ratings, store.times
    user_vocab, item_vocab = store.user_vocab, store.item_vocab
    if max_users:
        kept = min(int(max_users), len(user_vocab))
        mask = users <= kept                   # the vocabulary is sorted: the first N users by id
        users, items, values = users[mask], items[mask], values[mask]
        times = None if times is None else times[mask]
        present = np.zeros(len(item_vocab) + 1, dtype=bool)
        present[items] = True
        present[0] = False
        items = np.cumsum(present).astype(np.int32)[items]
        user_vocab, item_vocab = user_vocab[:kept], item_vocab[present[1:]]
        notes.append(f"kept the first {kept} users by id ({int(mask.sum())} ratings)")
        del mask
    rows = split_rows(split, len(values), users, items, times, test_fraction, val_fraction, seed, notes)
    train, val, test = rows
    if not len(test) or not len(train):
        raise DataError(f"{store.source}: the {split} split left an empty train or test set "
                        f"({len(values)} ratings, {len(user_vocab)} users); more ratings are needed")
    key = {"split": split, "test_fraction": test_fraction, "val_fraction": val_fraction, "seed": seed,
           "max_users": max_users}
    folder = _write_parts(store.folder / f"split-{key_digest(key)}", dict(zip(PARTS, rows)),
                          {"users": users, "items": items, "ratings": values, "times": times})
    parts = {}
    for name, count in json.loads((folder / "sizes.json").read_text(encoding="utf-8")).items():
        cols = {f: column(folder / name, f, count) for f in FIELDS}
        parts[name] = Interactions(cols["users"], cols["items"], cols["ratings"], RawIds(user_vocab, cols["users"]),
                                   RawIds(item_vocab, cols["items"]), cols["times"])
    titles = titles or {}
    catalogue = Catalogue(user_vocab, item_vocab, parts["train"], parts["val"], parts["test"],
                          titles=[""] + [str(titles.get(raw, raw)) for raw in item_vocab],
                          user_features=None, item_features=None, feature_names={},
                          rating_range=(float(values.min()), float(values.max())), split=split, notes=notes,
                          streamed=True)
    _add_side_features(catalogue, SimpleNamespace(genres=genres or {}, user_attributes={}))
    _note_cold_start(catalogue)
    return catalogue


def _write_parts(folder: Path, rows: dict, columns: dict) -> Path:
    """folder/<part>/<field>.bin for each split (times: the row number when the file has none), built once."""
    if (folder / "sizes.json").is_file():
        return folder
    work = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        for name, picked in rows.items():
            (work / name).mkdir()
            for field in FIELDS:
                source = columns[field]
                with open(work / name / f"{field}.bin", "wb") as out:
                    for start in range(0, len(picked), COPY_ROWS):
                        block = picked[start:start + COPY_ROWS]
                        values = block if source is None else np.asarray(source[block])
                        values.astype(COLUMNS[field], copy=False).tofile(out)
        (work / "sizes.json").write_text(json.dumps({name: int(len(r)) for name, r in rows.items()}),
                                         encoding="utf-8")
        try:
            os.replace(work, folder)
        except OSError:
            if not (folder / "sizes.json").is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return folder


def split_digest(cat: Catalogue) -> str:
    """`common.data.cache.array_digest` of what data.load_data digests (train raw ids and ratings, test raw ids),
    computed COPY_ROWS rows at a time: a streamed run and an in-memory run of the same file get the same digest."""
    h = hashlib.sha256()
    for values in (cat.train.raw_users, cat.train.raw_items, cat.train.ratings, cat.test.raw_users,
                   cat.test.raw_items):
        dtype = values.dtype
        if dtype == object:   # in memory these are hashed as NumPy's fixed-width str of their longest id
            lengths = np.fromiter((len(v) for v in values.vocab), np.int64, len(values.vocab))
            width = max((int(lengths[np.asarray(values.indices[s:s + COPY_ROWS]) - 1].max())
                         for s in range(0, len(values), COPY_ROWS)), default=1)
            dtype = np.dtype(f"<U{max(width, 1)}")
        h.update(str((dtype.str, (len(values),))).encode())
        for start in range(0, len(values), COPY_ROWS):
            h.update(np.ascontiguousarray(np.asarray(values[start:start + COPY_ROWS], dtype=dtype)).tobytes())
    return h.hexdigest()[:16]
