"""The one checked pass over a ratings CSV that the streamed store is built from (rating_store.py says why).

`CHUNK_ROWS` rows at a time become Python rows, then columns: ids become dense codes through two dicts (NumPy
finds each chunk's distinct ids first, so a dict sees each id once per chunk), ratings float32, timestamps
int64 seconds, appended to files in the work folder. Every row is checked as the in-memory reader
(`ratings.read_csv`) checks it, with its dialect and column layout, and fails with the file and the physical
line before anything trains.
"""
from __future__ import annotations

import codecs
import csv
import io
from pathlib import Path

import numpy as np

from deepsuite.common.errors import DataError
from deepsuite.pipelines.recommendation.ratings import _is_number, csv_layout, sniff_dialect

CHUNK_ROWS = 1 << 18      # rows parsed as Python objects at a time


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


def parse_csv(path: Path, encoding: str, work: Path) -> dict:
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
