"""Labelled text from files: CSV/TSV tables with named columns, and folders of text files by class.

Shared by the text pipelines. Every reader decodes strictly (a wrong encoding is reported with the file,
line and byte, never replaced by question marks), and every problem names the file and how to fix it.
Labels are returned as the raw strings found; mapping them to classes is the caller's decision.
"""
from __future__ import annotations

import array
import codecs
import csv
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deepsuite.common.errors import DataError

TEXT_SUFFIXES = (".txt", ".text", ".md", "")


@dataclass
class LabeledTexts:
    """Texts with their raw labels, in file order; `origin` says where each row came from (file:line)."""

    texts: list[str]
    labels: list[str]
    origin: list[str] = field(default_factory=list)
    split: list[str] = field(default_factory=list)  # "train"/"test" when the source has its own split


def decode_text(raw: bytes, where: str, encoding: str = "utf-8") -> str:
    """Decode strictly; a bad byte names the line and offset and says how to choose another encoding."""
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{where}: line {line}, byte {exc.start}: {raw[exc.start:exc.start + 1]!r} is not valid "
                        f"{encoding} ({exc.reason}); re-save the file as UTF-8 or set data.encoding "
                        "(e.g. latin-1 or cp1252)") from None
    except LookupError:
        raise DataError(f"unknown text encoding {encoding!r} (set data.encoding to e.g. utf-8, latin-1, cp1252)") from None
    return text.removeprefix("\ufeff")  # a UTF-8 byte-order mark is not part of the first field


def read_table(path: str | Path, text_column: str, label_column: str, delimiter: str | None = None,
               encoding: str = "utf-8") -> LabeledTexts:
    """Rows of a CSV (`,`) or TSV (`\\t`, chosen by suffix unless `delimiter` is given) with a header line."""
    path, delimiter = _table_file(path, delimiter)
    text = decode_text(path.read_bytes(), str(path), encoding)
    texts, labels, origin = [], [], []
    _, records = _records(path, io.StringIO(text, newline=""), delimiter, text_column, label_column)
    for line, row_text, label in records:
        texts.append(row_text)
        labels.append(label)
        origin.append(f"{path.name}:{line}")
    return LabeledTexts(texts, labels, origin)


def _table_file(path: str | Path, delimiter: str | None) -> tuple[Path, str]:
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"table file not found: {path}")
    return path, delimiter or ("\t" if path.suffix.lower() in (".tsv", ".tab") else ",")


def _records(path: Path, lines, delimiter: str, text_column: str, label_column: str,
             before_record: Callable[[], None] = lambda: None) -> tuple[int, Iterator[tuple[int, str, str]]]:
    """The text column's index, and (line number, text, label) of each non-blank record under the header, with
    the errors both readers give: the in-memory one and the streaming index must name the same file, line and
    fields. The header is checked at once; `before_record` runs just before the csv reader takes a record's
    lines (it never reads ahead)."""
    reader = csv.reader(lines, delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"{path}: the file is empty (expected a header line naming the columns)") from None
    except csv.Error as exc:
        raise DataError(f"{path}: line 1 is not valid {'TSV' if delimiter == chr(9) else 'CSV'}: {exc}") from None
    header = [name.strip() for name in header]
    t_col, l_col = _columns(path, header, text_column, label_column)
    return t_col, _rows(path, reader, header, t_col, l_col, before_record)


def _rows(path: Path, reader, header: list[str], t_col: int, l_col: int, before_record):
    found = False
    try:
        while True:
            before_record()
            try:
                row = next(reader)
            except StopIteration:
                break
            if not row or all(not cell.strip() for cell in row):
                continue  # blank lines between records are not records
            if len(row) <= max(t_col, l_col):
                raise DataError(f"{path}: line {reader.line_num} has {len(row)} fields, expected {len(header)} "
                                f"(header: {', '.join(header)}); quote fields that contain the delimiter")
            found = True
            yield reader.line_num, row[t_col], row[l_col].strip()
    except csv.Error as exc:
        raise DataError(f"{path}: line {reader.line_num} is not valid CSV: {exc}") from None
    if not found:
        raise DataError(f"{path}: no data rows under the header")


def read_class_folders(root: str | Path, encoding: str = "utf-8") -> LabeledTexts:
    """Text files by class: `root/<class>/*.txt`, or aclImdb's `root/{train,test}/<class>/*.txt`.

    In the aclImdb layout only sub-folders present in both train/ and test/ (or holding .txt files
    directly) count as classes, so its `unsup/` folder of unlabelled reviews is skipped.
    """
    root = Path(root).expanduser()
    out = LabeledTexts([], [], [], [])
    for file, name, split in class_folder_files(root):
        text = decode_text(file.read_bytes(), str(file), encoding)
        out.texts.append(text.strip())
        out.labels.append(name)
        out.origin.append(str(file.relative_to(root)))
        out.split.append(split)
    return out


def class_folder_files(root: str | Path) -> list[tuple[Path, str, str]]:
    """(file, class name, split) of every text file of a class-folder tree, in `read_class_folders`'s order;
    only the listing: no file is opened."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"text folder not found: {root}")
    splits = [s for s in ("train", "test") if (root / s).is_dir()]
    out = []
    for split in splits or [""]:
        base = root / split if split else root
        classes = sorted(d.name for d in base.iterdir() if d.is_dir() and _text_files(d))
        if splits:
            other = root / ("test" if split == "train" else "train")
            if other.is_dir():
                classes = [c for c in classes if (other / c).is_dir()]
        if len(classes) < 2:
            raise DataError(f"{base}: expected one sub-folder of text files per class (at least 2), found "
                            f"{classes or 'none'}")
        out.extend((file, name, split) for name in classes for file in _text_files(base / name))
    return out


def _text_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES
                  and not p.name.startswith("."))


# -- streaming: an index of where each text lies, and the texts read back from it ----------------------
#
# A table or folder too large to hold as Python strings is read once here, record by record, with the
# checks of `read_table` / `read_class_folders` (strict decoding, field counts, the same messages), and
# only an index is kept: per record its file, byte offset and length, the line it ends on, a code for its
# raw label and whether its text is blank. `TextRecords` reads texts back from that index when a batch
# needs them, and gives exactly the strings the in-memory readers return.

_LONE_CR = re.compile(rb"\r(?!\n)")


@dataclass
class RecordIndex:
    """Where each record of a table (one file) or a class folder (one file per record) lies on disk.

    `label_values[label_codes[i]]` is record i's raw label; `line[i]` the line a table record ends on."""

    kind: str                    # "table" or "files"
    files: np.ndarray            # object array of paths: the table, or one file per record
    file: np.ndarray             # int32, per record: which of `files`
    offset: np.ndarray           # int64 byte offset of the record
    length: np.ndarray           # int64 byte length of the record
    line: np.ndarray             # int64, tables: the line the record ends on (as `read_table`'s origin)
    label_values: list[str]
    label_codes: np.ndarray      # int32
    blank: np.ndarray            # bool: the text is empty or whitespace
    split: list[str] = field(default_factory=list)   # folders in aclImdb's layout: "train"/"test"
    root: Path = Path(".")
    encoding: str = "utf-8"
    delimiter: str = ","
    text_field: int = 0

    def __len__(self) -> int:
        return len(self.offset)

    def origin(self, i: int) -> str:
        """Where record i came from, as the in-memory readers say it (file:line, or the file's path)."""
        if self.kind == "table":
            return f"{Path(self.files[0]).name}:{int(self.line[i])}"
        return str(Path(self.files[self.file[i]]).relative_to(self.root))

    def read(self, rows) -> list[str]:
        """The texts of `rows` (record numbers), in the order given; each file is opened once."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        out: list[str] = [""] * len(rows)
        order = np.argsort(self.offset[rows] + (self.file[rows].astype(np.int64) << 40), kind="stable")
        if self.kind == "table":
            with open(self.files[0], "rb") as handle:
                for k in order:
                    r = rows[k]
                    handle.seek(int(self.offset[r]))
                    out[k] = self._table_text(handle.read(int(self.length[r])), r)
            return out
        for k in order:
            path = self.files[self.file[rows[k]]]
            with open(path, "rb") as handle:
                out[k] = decode_text(handle.read(), str(path), self.encoding).strip()
        return out

    def _table_text(self, raw: bytes, r: int) -> str:
        text = _decode_piece(raw, self.files[0], self.encoding, int(self.line[r]), int(self.offset[r]))
        row = next(csv.reader(io.StringIO(text, newline=""), delimiter=self.delimiter))
        return row[self.text_field]


class TextRecords:
    """N texts that stay on disk, standing for a list of N strings (a `RecordIndex` and record numbers).

    Indexing like a list: an integer reads one text, a slice or an index array gives another `TextRecords`
    (nothing read), iteration reads the texts in order a chunk at a time (bounded memory)."""

    CHUNK = 2048

    def __init__(self, index: RecordIndex, rows=None):
        self.index = index
        self.rows = np.arange(len(index)) if rows is None else np.asarray(rows, dtype=np.int64).reshape(-1)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, item):
        if isinstance(item, (int, np.integer)):
            return self.index.read([self.rows[item]])[0]
        return TextRecords(self.index, self.rows[item])

    def __iter__(self):
        for start in range(0, len(self.rows), self.CHUNK):
            yield from self.index.read(self.rows[start:start + self.CHUNK])

    def read(self) -> list[str]:
        return list(self)

    @property
    def nbytes(self) -> int:
        """Bytes of text on disk behind these records."""
        return int(self.index.length[self.rows].sum())

    def __repr__(self) -> str:
        return f"TextRecords({len(self)} texts on disk, {self.nbytes} bytes)"


def streamable_encoding(encoding: str) -> bool:
    """Whether records can be found by line-end bytes and decoded one line at a time: an encoding whose line
    ends are the ASCII bytes and never part of another character, and which keeps no state across lines
    (UTF-8, Latin-1, the cp125x pages; not UTF-16/32, UTF-7 or the ISO-2022 family)."""
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise DataError(f"unknown text encoding {encoding!r} (set data.encoding to e.g. utf-8, latin-1, "
                        "cp1252)") from None
    if name.startswith(("utf-16", "utf-32", "utf-7", "iso2022", "hz", "utf-8-sig")):
        return False
    try:
        return "\r\n,\t\"".encode(encoding) == b"\r\n,\t\""
    except UnicodeError:
        return False


def index_table(path: str | Path, text_column: str, label_column: str, delimiter: str | None = None,
                encoding: str = "utf-8") -> RecordIndex:
    """`read_table`'s pass without keeping the texts: every record decoded and parsed (the same errors, with
    the same file, line and byte), and only its place in the file, its label and blankness kept."""
    path, delimiter = _table_file(path, delimiter)
    spans = []   # (offset, length) of the lines handed to the csv reader for the record being read

    def lines():
        offset, number = 0, 0
        with open(path, "rb") as handle:
            for raw in handle:          # b"\n"-terminated lines
                number += 1
                text = _decode_piece(raw, path, encoding, number, offset)
                # io.StringIO(newline="") ends a line at a lone "\r" too: hand the csv reader the same lines
                for piece_bytes, piece in _split_lone_cr(raw, text, encoding):
                    if offset == 0:
                        piece = piece.removeprefix("\ufeff")   # as decode_text drops a byte-order mark
                    spans.append((offset, len(piece_bytes)))
                    offset += len(piece_bytes)
                    yield piece

    offsets, lengths, line_numbers, codes, blank = (array.array("q"), array.array("q"), array.array("q"),
                                                    array.array("i"), array.array("b"))
    values: dict[str, int] = {}
    t_col, records = _records(path, lines(), delimiter, text_column, label_column, spans.clear)
    for line, text, label in records:
        first, last = spans[0], spans[-1]   # the lines of this record alone: cleared before it was read
        offsets.append(first[0])
        lengths.append(last[0] + last[1] - first[0])
        line_numbers.append(line)
        codes.append(values.setdefault(label, len(values)))
        blank.append(not text.strip())
    n = len(offsets)
    return RecordIndex("table", np.array([str(path)], dtype=object), np.zeros(n, np.int32),
                       np.frombuffer(offsets, np.int64).copy(), np.frombuffer(lengths, np.int64).copy(),
                       np.frombuffer(line_numbers, np.int64).copy(), list(values),
                       np.frombuffer(codes, np.int32).copy(), np.frombuffer(blank, np.int8).astype(bool),
                       root=path.parent, encoding=encoding, delimiter=delimiter, text_field=t_col)


def index_class_folders(root: str | Path, encoding: str = "utf-8") -> RecordIndex:
    """`read_class_folders`'s pass without keeping the texts: every file read and strictly decoded once (a
    bad one named with its path, line and byte), and only its path, size, class and blankness kept."""
    root = Path(root).expanduser()
    listing = class_folder_files(root)
    lengths, blank, codes, values = [], [], [], {}
    for file, name, _ in listing:
        raw = file.read_bytes()
        blank.append(not decode_text(raw, str(file), encoding).strip())
        lengths.append(len(raw))
        codes.append(values.setdefault(name, len(values)))
    n = len(listing)
    split = [s for _, _, s in listing]
    return RecordIndex("files", np.array([str(f) for f, _, _ in listing], dtype=object), np.arange(n, dtype=np.int32),
                       np.zeros(n, np.int64), np.array(lengths, np.int64), np.zeros(n, np.int64), list(values),
                       np.array(codes, np.int32), np.array(blank, bool), split, root=root, encoding=encoding)


def _columns(path: Path, header: list[str], text_column: str, label_column: str) -> tuple[int, int]:
    columns = {}
    for role, name in (("data.text_column", text_column), ("data.label_column", label_column)):
        if name not in header:
            raise DataError(f"{path}: no column {name!r} (set {role} to one of: {', '.join(map(repr, header))})")
        columns[role] = header.index(name)
    return columns["data.text_column"], columns["data.label_column"]


def _decode_piece(raw: bytes, path, encoding: str, line: int, offset: int) -> str:
    """Decode a line (or record) of a file strictly; the error says `decode_text`'s words about the whole file
    (its line and byte), so a streamed read and an in-memory one name a bad byte alike."""
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line += raw[: exc.start].count(b"\n")
        raise DataError(f"{path}: line {line}, byte {offset + exc.start}: {raw[exc.start:exc.start + 1]!r} is not "
                        f"valid {encoding} ({exc.reason}); re-save the file as UTF-8 or set data.encoding "
                        "(e.g. latin-1 or cp1252)") from None
    except LookupError:
        raise DataError(f"unknown text encoding {encoding!r} (set data.encoding to e.g. utf-8, latin-1, "
                        "cp1252)") from None


def _split_lone_cr(raw: bytes, text: str, encoding: str) -> list[tuple[bytes, str]]:
    if b"\r" not in raw or not _LONE_CR.search(raw):
        return [(raw, text)]
    cuts = [m.end() for m in _LONE_CR.finditer(raw)]
    pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)]) if b > a]
    return [(piece, piece.decode(encoding)) for piece in pieces]
