"""Labelled text from files: CSV/TSV tables with named columns, and folders of text files by class.

Shared by the text pipelines. Every reader decodes strictly (a wrong encoding is reported with the file,
line and byte, never replaced by question marks), and every problem names the file and how to fix it.
Labels are returned as the raw strings found; mapping them to classes is the caller's decision.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

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
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"table file not found: {path}")
    delimiter = delimiter or ("\t" if path.suffix.lower() in (".tsv", ".tab") else ",")
    text = decode_text(path.read_bytes(), str(path), encoding)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"{path}: the file is empty (expected a header line naming the columns)") from None
    except csv.Error as exc:
        raise DataError(f"{path}: line 1 is not valid {'TSV' if delimiter == chr(9) else 'CSV'}: {exc}") from None
    header = [name.strip() for name in header]
    columns = {}
    for role, name in (("data.text_column", text_column), ("data.label_column", label_column)):
        if name not in header:
            raise DataError(f"{path}: no column {name!r} (set {role} to one of: {', '.join(map(repr, header))})")
        columns[role] = header.index(name)
    t_col, l_col = columns["data.text_column"], columns["data.label_column"]
    texts, labels, origin = [], [], []
    try:
        for row in reader:
            if not row or all(not cell.strip() for cell in row):
                continue  # blank lines between records are not records
            if len(row) <= max(t_col, l_col):
                raise DataError(f"{path}: line {reader.line_num} has {len(row)} fields, expected {len(header)} "
                                f"(header: {', '.join(header)}); quote fields that contain the delimiter")
            texts.append(row[t_col])
            labels.append(row[l_col].strip())
            origin.append(f"{path.name}:{reader.line_num}")
    except csv.Error as exc:
        raise DataError(f"{path}: line {reader.line_num} is not valid CSV: {exc}") from None
    if not texts:
        raise DataError(f"{path}: no data rows under the header")
    return LabeledTexts(texts, labels, origin)


def read_class_folders(root: str | Path, encoding: str = "utf-8") -> LabeledTexts:
    """Text files by class: `root/<class>/*.txt`, or aclImdb's `root/{train,test}/<class>/*.txt`.

    In the aclImdb layout only sub-folders present in both train/ and test/ (or holding .txt files
    directly) count as classes, so its `unsup/` folder of unlabelled reviews is skipped.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"text folder not found: {root}")
    splits = [s for s in ("train", "test") if (root / s).is_dir()]
    out = LabeledTexts([], [], [], [])
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
        for name in classes:
            for file in _text_files(base / name):
                text = decode_text(file.read_bytes(), str(file), encoding)
                out.texts.append(text.strip())
                out.labels.append(name)
                out.origin.append(str(file.relative_to(root)))
                out.split.append(split)
    return out


def _text_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES
                  and not p.name.startswith("."))
