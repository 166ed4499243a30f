"""A ratings CSV streamed into compact memmapped columns: chunked parsing, dense ids, duplicates, a disk cache.

The in-memory reader (`ratings.read_csv`) holds the whole file as Python rows and then as raw-id arrays:
measured on MovieLens 100K written as a CSV (1.98 MB), its peak is 39x the file's size with integer ids and
19x with string ids (tracemalloc, reading through splitting); on 3 million random rows (72 MB) its peak RSS
was 2.26 GB, 31x. `PARSE_FACTOR` (40) turns a file's size into that estimate for
`image_files.choose_streaming`.

Here the file is read once (rating_csv.py), `CHUNK_ROWS` rows at a time, with the dialect and column layout of the in-memory
reader (`ratings.sniff_dialect`, `ratings.csv_layout`), and every row is checked as it checks them: an
undecodable byte, a short row, a non-numeric or non-finite rating, a bad timestamp each fail with the file and
the line (the physical line, `csv.reader.line_num`) before anything trains. The line of a bad byte is found
by a second pass over the file's byte lines (exact where the newline is the byte `\n`: UTF-8, Latin-1,
cp1252...). Raw ids become dense codes through two dicts (NumPy finds each chunk's distinct ids first, so a
dict sees each of them once per chunk): the id vocabularies stay in memory, one entry per distinct user and
per distinct item, small next to the rows. What goes to disk, per row, is int32 user and item positions in
the *sorted* vocabularies (1-based, what `splits.index_of` gives the in-memory path), float32 ratings and
int64 timestamps when the file has them: 12-20 bytes a row. The duplicate policy (`data.duplicates`) then
runs on those columns, with the in-memory policy's results (`ratings.apply_duplicate_policy`).

Peak memory: one chunk of Python rows and its columns (CHUNK_ROWS x ~500 bytes, ~130 MB) plus the
vocabulary dicts while parsing; then the duplicate check, which sorts an int64 (user, item) key: ~24 bytes a
row for the key, its order and the sorted key (and, only when duplicates exist, a few more int64/float64 arrays of that size).
Nothing per row is ever a Python object beyond the chunk being parsed. (3 million rows: peak RSS 275 MB
through parsing and splitting, against the in-memory path's 2.26 GB.)

The columns are cached under `<cache>/ratings-stream/<file stem>-<key>/`, keyed by the file's resolved path,
byte size and modification time, the encoding and the duplicate policy: built in a temporary folder and
renamed, so concurrent runs never see half an entry, a second run maps the columns at once, and a changed file
gets a new entry.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deepsuite.common.data.cache import cache_root, ensure_writable, key_digest
from deepsuite.common.errors import DataError
from deepsuite.pipelines.recommendation.rating_csv import parse_csv
from deepsuite.pipelines.recommendation.ratings import plain_integer

STORE_VERSION = 1
COPY_ROWS = 1 << 22       # rows per step when columns are remapped or filtered on disk
PARSE_FACTOR = 40         # the in-memory reader's peak / the file's size (measured, see above)
COLUMNS = {"users": np.int32, "items": np.int32, "ratings": np.float32, "times": np.int64}


@dataclass
class RatingStore:
    """A ratings file as memmapped columns in index space, its sorted id vocabularies and what was done."""

    name: str
    source: str
    folder: Path
    users: np.ndarray                  # int32, 1-based positions in user_vocab
    items: np.ndarray                  # int32, 1-based positions in item_vocab
    ratings: np.ndarray                # float32
    times: np.ndarray | None           # int64 seconds, None without a timestamp column
    user_vocab: np.ndarray             # sorted raw ids: int64, or object array of str
    item_vocab: np.ndarray
    notes: list[str] = field(default_factory=list)
    reused: bool = False               # True when the columns came from the cache

    def __len__(self) -> int:
        return len(self.ratings)


def estimated_bytes(path: Path) -> int:
    """What reading `path` into memory would take at its peak (see PARSE_FACTOR)."""
    return Path(path).stat().st_size * PARSE_FACTOR


def open_store(path: Path, encoding: str = "utf-8", duplicates: str = "latest",
               cache_dir: str | None = None) -> RatingStore:
    """The cached columns of `path`, built now (one chunked pass) when the cache has none for this file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"ratings file not found: {path}")
    stat = path.stat()
    key = {"version": STORE_VERSION, "path": str(path.resolve()), "size": stat.st_size,
           "mtime_ns": stat.st_mtime_ns, "encoding": encoding, "duplicates": duplicates}
    root = ensure_writable(cache_root(cache_dir) / "ratings-stream", "cache")
    folder = root / f"{path.stem}-{key_digest(key)}"
    if (folder / "meta.json").is_file():
        try:
            return _load(folder, reused=True)
        except (OSError, ValueError, KeyError) as exc:
            print(f"note: rebuilding damaged cache entry {folder} ({type(exc).__name__}: {exc})", file=sys.stderr)
            shutil.rmtree(folder, ignore_errors=True)
    work = Path(tempfile.mkdtemp(dir=root, prefix=f".{folder.name}."))
    try:
        _build(path, encoding, duplicates, work)
        try:
            os.replace(work, folder)
        except OSError:
            if not (folder / "meta.json").is_file():  # not another run's finished entry: a real failure
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return _load(folder, reused=False)


def column(folder: Path, name: str, rows: int) -> np.ndarray:
    """One stored column, memory-mapped read-only (an empty array for zero rows: mmap cannot map nothing)."""
    dtype = COLUMNS[name]
    if rows == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(folder / f"{name}.bin", dtype=dtype, mode="r", shape=(rows,))


def _load(folder: Path, reused: bool) -> RatingStore:
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    rows = int(meta["rows"])
    vocab = {side: _read_vocab(folder, side, meta[f"{side}_ids"]) for side in ("user", "item")}
    return RatingStore(meta["name"], meta["source"], folder, column(folder, "users", rows),
                       column(folder, "items", rows), column(folder, "ratings", rows),
                       column(folder, "times", rows) if meta["has_time"] else None,
                       vocab["user"], vocab["item"], list(meta["notes"]), reused)


def _read_vocab(folder: Path, side: str, kind: str) -> np.ndarray:
    if kind == "int":
        return np.load(folder / f"{side}_vocab.npy", allow_pickle=False)
    return np.array(json.loads((folder / f"{side}_vocab.json").read_text(encoding="utf-8")), dtype=object)


# ------------------------------------------------------------------------------------------------
# Building an entry


def _build(path: Path, encoding: str, duplicates: str, work: Path) -> None:
    source = f"csv:{path}"
    parsed = parse_csv(path, encoding, work)
    rows, has_time, notes = parsed["rows"], parsed["has_time"], parsed["notes"]
    kinds, vocabs = {}, {}
    for side, codes in (("user", parsed["users"]), ("item", parsed["items"])):
        vocab, remap = sorted_vocab(codes)
        kinds[side], vocabs[side] = ("int" if vocab.dtype.kind in "iu" else "str"), vocab
        _rewrite(work / f"{side}s.codes", np.int32, rows, work / f"{side}s.bin", lambda block, r=remap: r[block])
        (work / f"{side}s.codes").unlink()
        if kinds[side] == "int":
            np.save(work / f"{side}_vocab.npy", vocab)
        else:
            (work / f"{side}_vocab.json").write_text(json.dumps(vocab.tolist()), encoding="utf-8")
    del parsed
    columns = ["users", "items", "ratings"] + (["times"] if has_time else [])
    view = {name: column(work, name, rows) for name in columns}
    kept = duplicate_rows(view["users"], view["items"], view["ratings"], view.get("times"), len(vocabs["item"]),
                          duplicates, source, vocabs["user"], vocabs["item"])
    if kept is not None:
        keep, replaced, note = kept
        notes.append(note)
        del view
        for name in columns:
            values = replaced.get(name)
            _rewrite(work / f"{name}.bin", COLUMNS[name], rows, work / f"{name}.new", keep=keep, values=values)
            os.replace(work / f"{name}.new", work / f"{name}.bin")
        rows = len(keep)
    if rows < 10:
        raise DataError(f"{source}: only {rows} ratings; a recommender needs at least 10")
    meta = {"name": path.stem, "source": source, "rows": rows, "has_time": has_time, "notes": notes,
            "user_ids": kinds["user"], "item_ids": kinds["item"]}
    (work / "meta.json").write_text(json.dumps(meta), encoding="utf-8")


def sorted_vocab(codes: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """(sorted vocabulary, code -> 1-based position): ints when every id is a plain integer below 2**31 (as
    `ratings._ids` decides for the in-memory path), else strings, sorted as NumPy sorts them there."""
    keys = list(codes)  # in code order (first seen first)
    values = None
    if keys and all(map(plain_integer, keys)):
        numbers = [int(k) for k in keys]
        if max(abs(n) for n in numbers) < 2**31:
            values = np.array(numbers, dtype=np.int64)
    if values is None:
        values = np.empty(len(keys), dtype=object)
        values[:] = keys
    order = np.argsort(values, kind="stable")
    remap = np.empty(len(keys), dtype=np.int32)
    remap[order] = np.arange(1, len(keys) + 1, dtype=np.int32)
    return values[order], remap


def _rewrite(source: Path, dtype, rows: int, target: Path, transform=None, keep: np.ndarray | None = None,
             values: np.ndarray | None = None) -> None:
    """Copy a raw column file to `target` COPY_ROWS at a time: mapped by `transform`, or only the `keep` rows
    (in order), or `values` written instead."""
    with open(target, "wb") as out:
        if values is not None:
            np.asarray(values, dtype=dtype).tofile(out)
            return
        data = np.memmap(source, dtype=dtype, mode="r", shape=(rows,)) if rows else np.zeros(0, dtype)
        count = rows if keep is None else len(keep)
        for start in range(0, count, COPY_ROWS):
            if keep is None:
                block = np.asarray(data[start:start + COPY_ROWS])
                block = transform(block) if transform else block
            else:
                block = np.asarray(data[keep[start:start + COPY_ROWS]])
            block.astype(dtype, copy=False).tofile(out)
        del data


def duplicate_rows(users, items, ratings, times, num_items: int, policy: str, source: str, user_vocab, item_vocab):
    """None when every (user, item) pair is once in the file; else (rows kept in file order, replaced column
    values {"ratings", "times"} for `mean`, the note), with `ratings.apply_duplicate_policy`'s results."""
    rows = len(users)
    key = users.astype(np.int64) * (num_items + 1) + items
    order = np.argsort(key, kind="stable")          # by pair, file order within a pair
    sorted_key = key[order]
    same = sorted_key[1:] == sorted_key[:-1]
    if not same.any():
        return None
    starts = np.flatnonzero(np.r_[True, ~same])
    counts = np.diff(np.r_[starts, rows])
    repeated, extra = int((counts > 1).sum()), rows - len(starts)
    if policy == "error":
        row = order[starts[np.flatnonzero(counts > 1)[0]]]
        raise DataError(f"{source}: {repeated} (user, item) pairs appear more than once ({extra} extra rows), "
                        f"e.g. user {user_vocab[users[row] - 1]}, item {item_vocab[items[row] - 1]}; remove them "
                        "or set data.duplicates=latest or mean")
    if policy == "mean":
        sums = np.add.reduceat(np.asarray(ratings)[order].astype(np.float64), starts)
        first = order[starts]                         # each pair's first row (stable sort: file order)
        by_row = np.argsort(first, kind="stable")
        replaced = {"ratings": (sums / counts).astype(np.float32)[by_row]}
        if times is not None:
            replaced["times"] = np.maximum.reduceat(np.asarray(times)[order], starts)[by_row]
        return first[by_row], replaced, (f"duplicates: {repeated} (user, item) pairs had {extra} extra rows; "
                                         "averaged their ratings (latest timestamp kept)")
    if times is None:
        last = order[starts + counts - 1]             # the latest in file order
    else:
        del order, sorted_key
        by_time = np.lexsort((np.arange(rows, dtype=np.int64), np.asarray(times), key))  # pair, time, file order
        key = key[by_time]
        last = by_time[np.flatnonzero(np.r_[key[1:] != key[:-1], True])]
    return np.sort(last), {}, (f"duplicates: {repeated} (user, item) pairs had {extra} extra rows; kept the latest "
                               "row of each (by timestamp, then file order)")


# ------------------------------------------------------------------------------------------------
# The chunked pass
