"""A ratings CSV streamed into compact memmapped columns: chunked parsing, dense ids, duplicates, a disk cache.

The in-memory reader (`ratings.read_csv`) holds the whole file as Python rows and then as raw-id arrays:
measured on MovieLens 100K written as a CSV (1.98 MB), its peak is 39x the file's size with integer ids and
19x with string ids (tracemalloc, reading through splitting); on 3 million random rows (72 MB) its peak RSS
was 2.26 GB, 31x. `PARSE_FACTOR` (40) turns a file's size into that estimate for
`image_files.choose_streaming`.

Here the file is read once, `CHUNK_ROWS` rows at a time, with the dialect and column layout of the in-memory
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

import codecs
import csv
import io
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
from deepsuite.pipelines.recommendation.ratings import _is_number, csv_layout, plain_integer, sniff_dialect

STORE_VERSION = 1
CHUNK_ROWS = 1 << 18      # rows parsed as Python objects at a time
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
    parsed = _parse(path, encoding, work)
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


class _Chunk:
    """Up to CHUNK_ROWS parsed rows, their line numbers, and their cells by column once `split` ran."""

    def __init__(self):
        self.rows, self.lines = [], []
        self.users = self.items = self.ratings = self.times = None

    def __len__(self) -> int:
        return len(self.lines)

    def split(self, layout: tuple, has_time: bool) -> bool:
        """Stripped cells per column; returns False when a row has no timestamp cell (then times are dropped)."""
        user, item, rating, stamp, _ = layout
        rows = self.rows
        self.users = [row[user].strip() for row in rows]
        self.items = [row[item].strip() for row in rows]
        self.ratings = [row[rating].strip() for row in rows]
        if has_time and all(len(row) > stamp for row in rows):
            self.times = [row[stamp].strip() for row in rows]
            return True
        return False


def _parse(path: Path, encoding: str, work: Path) -> dict:
    """Read `path` once into work/{users,items}.codes (dense codes), ratings.bin and times.bin."""
    dialect = sniff_dialect(_head(path, encoding))
    state = {"users": {}, "items": {}, "rows": 0, "has_time": None, "time_mode": None}
    with open(path, "rb") as raw, open(work / "users.codes", "wb") as users_out, \
            open(work / "items.codes", "wb") as items_out, open(work / "ratings.bin", "wb") as ratings_out, \
            open(work / "times.bin", "wb") as times_out:
        outs = {"users": users_out, "items": items_out, "ratings": ratings_out, "times": times_out}
        if raw.read(3) != codecs.BOM_UTF8 or codecs.lookup(encoding).name != "utf-8":
            raw.seek(0)       # a UTF-8 byte-order mark is not part of the first field
        reader = csv.reader(io.TextIOWrapper(raw, encoding=encoding, errors="strict", newline=""), dialect)
        layout, chunk, needed = None, _Chunk(), 0
        try:
            for row in reader:
                if not (row and row[0].strip()) and not any(cell.strip() for cell in row):
                    continue  # a blank line, as the in-memory reader skips them
                if layout is None:
                    columns, has_header = csv_layout(row, path)
                    needed = max(columns["user"], columns["item"], columns["rating"]) + 1
                    layout = (columns["user"], columns["item"], columns["rating"], columns["timestamp"], needed)
                    state["has_time"] = columns["timestamp"] is not None
                    if has_header:
                        continue
                if len(row) < needed:
                    raise DataError(f"{path} line {reader.line_num}: {len(row)} field(s), expected "
                                    "user,item,rating[,timestamp]")
                chunk.rows.append(row)
                chunk.lines.append(reader.line_num)
                if len(chunk.lines) >= CHUNK_ROWS:
                    _flush(chunk, layout, path, state, outs)
                    chunk = _Chunk()
        except csv.Error as exc:
            raise DataError(f"{path} line {reader.line_num}: not valid CSV ({exc})") from None
        except UnicodeDecodeError:
            raise _bad_byte(path, encoding) from None
        if layout is None:
            raise DataError(f"{path}: empty file; expected user,item,rating[,timestamp] rows")
        _flush(chunk, layout, path, state, outs)
    if not state["rows"]:
        raise DataError(f"{path}: no rating rows after the header")
    notes = []
    if not state["has_time"]:
        (work / "times.bin").unlink()
        notes.append("no timestamp column: file order stands in for time (temporal split, duplicates)")
    return {"rows": state["rows"], "has_time": bool(state["has_time"]), "users": state["users"],
            "items": state["items"], "notes": notes}


def _flush(chunk: _Chunk, layout: tuple, path: Path, state: dict, outs: dict) -> None:
    if not len(chunk):
        return
    # a row without a timestamp cell: the in-memory reader then drops every timestamp
    state["has_time"] = chunk.split(layout, bool(state["has_time"]))
    chunk.rows = None
    for side, cells in (("users", chunk.users), ("items", chunk.items)):
        _codes(cells, state[side]).tofile(outs[side])
    _numbers(chunk.ratings, chunk.lines, path, "rating").astype(np.float32).tofile(outs["ratings"])
    if state["has_time"]:
        _times(chunk, path, state).tofile(outs["times"])
    state["rows"] += len(chunk)


def _codes(cells: list[str], codes: dict[str, int]) -> np.ndarray:
    """Dense codes of a chunk's ids, new ids added to `codes`: NumPy finds the chunk's distinct ids, so the
    Python dict sees each of them once."""
    unique, inverse = np.unique(np.asarray(cells, dtype=str), return_inverse=True)
    setdefault = codes.setdefault
    known = np.fromiter((setdefault(c, len(codes)) for c in unique.tolist()), np.int32, len(unique))
    return known[inverse.reshape(-1)]


def _numbers(cells: list[str], lines: list[int], path: Path, what: str) -> np.ndarray:
    try:
        values = np.asarray(cells, dtype=np.float64)
    except ValueError:
        values = None
    if values is None or not np.isfinite(values).all():
        for cell, line in zip(cells, lines):
            try:
                ok = np.isfinite(float(cell))
            except ValueError:
                ok = False
            if not ok:
                raise DataError(f"{path} line {line}: {what} {cell!r} is not a number")
    return values


def _times(chunk: _Chunk, path: Path, state: dict) -> np.ndarray:
    """Seconds, or ISO dates, as the in-memory reader takes them (all numbers, else all dates); a file whose
    first chunks give seconds and a later one dates is refused (the in-memory reader would read all as dates)."""
    if state["time_mode"] != "iso" and all(map(_is_number, chunk.times)):
        state["time_mode"] = "seconds"
        return _numbers(chunk.times, chunk.lines, path, "timestamp").astype(np.int64)
    if state["time_mode"] == "seconds":
        k = next(k for k, value in enumerate(chunk.times) if not _is_number(value))
        raise DataError(f"{path} line {chunk.lines[k]}: timestamp {chunk.times[k]!r} is a date but earlier rows "
                        "give seconds; use one form for the whole file")
    state["time_mode"] = "iso"
    out = np.empty(len(chunk), dtype=np.int64)
    for k, (value, line) in enumerate(zip(chunk.times, chunk.lines)):
        try:
            out[k] = np.datetime64(value.replace(" ", "T"), "s").astype(np.int64)
        except ValueError:
            raise DataError(f"{path} line {line}: timestamp {value!r} is neither seconds nor an ISO date") from None
    return out


def _head(path: Path, encoding: str) -> str:
    """The file's first 4096 characters (what the in-memory reader sniffs the dialect from)."""
    try:
        decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    except LookupError:
        raise DataError(f"unknown text encoding {encoding!r} (set data.encoding to e.g. utf-8, latin-1, "
                        "cp1252)") from None
    with open(path, "rb") as handle:
        return decoder.decode(handle.read(4 * 4096 + 4)).removeprefix("\ufeff")[:4096]


def _bad_byte(path: Path, encoding: str) -> DataError:
    """The first undecodable byte of `path`, with its line and offset (a second pass, on failure only)."""
    offset = 0
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                raw.decode(encoding)
            except UnicodeDecodeError as exc:
                return DataError(f"{path}: line {number}, byte {offset + exc.start}: {raw[exc.start:exc.start + 1]!r} "
                                 f"is not valid {encoding} ({exc.reason}); re-save the file as UTF-8 or set "
                                 "data.encoding (e.g. latin-1 or cp1252)")
            offset += len(raw)
    return DataError(f"{path}: not valid {encoding}; re-save the file as UTF-8 or set data.encoding")
