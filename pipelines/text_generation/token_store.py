"""A corpus's token ids in a memory-mapped file, built by chunked passes over its files (bounded memory).

In memory a corpus costs about 23x its file size at its peak with the char tokenizer (the bytes, the
decoded str, then `encode`'s UTF-32 and int64 temporaries; ~6x once loaded) and 9x with the byte tokenizer
(measured on 20 MB of Shakespeare). Here the files are read 1 MiB at a time, twice for char (1: check
every file decodes as UTF-8 and collect its characters, so a bad file is named before anything is written;
2: encode and write) and once for byte, and the ids go to `<cache>/text-tokens/*.ids` in the smallest
unsigned dtype holding the vocabulary (uint8 for <= 256 tokens). The splits are slices of an `np.memmap`
of that file; the OS pages in what a batch touches.

The bytes seen are exactly `data._join`'s (one file as it is, Windows line ends made Unix; several files
each trimmed of leading/trailing newlines and joined by a blank line), with a "\r" at a chunk's end held
back until the next chunk says whether "\n" follows, and UTF-8 characters split across chunks reassembled
by an incremental decoder; `max_chars` cuts at the same character (char) or byte (byte) as in memory.
So the ids, the vocabulary and the dataset digest (`array_digest` of the ids as int32, hashed chunk by
chunk from the written file and kept in the sidecar JSON) equal the in-memory path's.

The entry is named by the corpus files' paths, the tokenizer and max_chars, and is reused while every file
keeps its size and modification time (the "stamp" in the sidecar JSON); a changed file rebuilds it in place.
"""
from __future__ import annotations

import codecs
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from deepsuite.common.data.cache import cache_root, ensure_writable, key_digest, write_atomically
from deepsuite.common.errors import DataError
from deepsuite.pipelines.text_generation import tokenizer as tok

CHUNK_BYTES = 1 << 20       # bytes read at a time (char: ~25 MB of temporaries in `encode` per chunk)
FORMAT = 1                  # bump when the stored layout or the joining rules change
# In-memory cost per byte of the corpus files, as `choose_streaming` takes it: half the measured peak above
# (23x char, 9x byte), since its thresholds assume loading peaks at about twice the figure it is given.
IN_MEMORY_FACTOR = {"char": 12, "byte": 5}


@dataclass
class StoredTokens:
    ids: np.memmap          # the whole corpus's token ids, read-only
    tokenizer: tok.Tokenizer
    digest: str             # array_digest(ids as int32, vocabulary bytes): the in-memory path's digest
    path: Path
    reused: bool            # True when an earlier run's file was reused


def estimated_bytes(files: list[Path], kind: str) -> int:
    """What loading these files into memory would take (IN_MEMORY_FACTOR x their size)."""
    return IN_MEMORY_FACTOR[kind] * sum(_stat(path).st_size for path in files)


def load_tokens(files: list[Path], kind: str, name: str, max_chars: int | None = None,
                cache_dir: str | Path | None = None, chunk_bytes: int = CHUNK_BYTES) -> StoredTokens:
    """The token ids of the joined files as a memmap: from the cache when no file changed, else built now."""
    files = [Path(p) for p in files]
    directory = ensure_writable(cache_root(cache_dir) / "text-tokens", "cache")
    identity = key_digest([FORMAT, kind, max_chars, [str(p.resolve()) for p in files]])
    stem = f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)[:60] or 'corpus'}-{kind}-{identity}"
    ids_path, meta_path = directory / f"{stem}.ids", directory / f"{stem}.json"
    stamp = key_digest([(str(p.resolve()), _stat(p).st_size, _stat(p).st_mtime_ns) for p in files])
    meta = _read_meta(meta_path)
    reused = bool(meta) and meta.get("stamp") == stamp and _complete(ids_path, meta)
    if not reused:
        meta = _build(files, kind, max_chars, chunk_bytes, ids_path)
        meta["stamp"] = stamp
        write_atomically(meta_path, lambda handle: handle.write(json.dumps(meta, ensure_ascii=False).encode()))
    tokenizer = tok.from_dict({"kind": kind, "vocabulary": meta["vocabulary"]})
    if meta["length"] == 0:
        raise DataError(f"corpus {name} is empty; give a text with at least a few thousand characters")
    ids = np.memmap(ids_path, dtype=np.dtype(meta["dtype"]), mode="r", shape=(meta["length"],))
    return StoredTokens(ids, tokenizer, meta["digest"], ids_path, reused)


def joined_chunks(files: list[Path], chunk_bytes: int = CHUNK_BYTES) -> Iterator[tuple[Path, bytes]]:
    """The bytes `data._join(files)` gives, in pieces of about `chunk_bytes`, each with the file it comes
    from (a separating blank line goes with the file after it)."""
    trim = len(files) > 1
    for index, path in enumerate(files):
        if trim and index:
            yield path, b"\n\n"
        held_newlines, started = 0, False   # trim: newlines that may end the file; content seen yet
        for piece in _unix_pieces(path, chunk_bytes):
            if not trim:
                yield path, piece
                continue
            if not started:
                piece = piece.lstrip(b"\n")
                started = bool(piece)
            body = piece.rstrip(b"\n")
            if body:
                yield from _newlines(path, held_newlines, chunk_bytes)
                yield path, body
                held_newlines = 0
            held_newlines += len(piece) - len(body)


def _unix_pieces(path: Path, chunk_bytes: int) -> Iterator[bytes]:
    """The file's bytes with "\r\n" made "\n", a chunk at a time; a trailing "\r" waits for the next chunk."""
    carry = b""
    try:
        with open(path, "rb") as handle:
            while raw := handle.read(chunk_bytes):
                piece, carry = carry + raw, b""
                if piece.endswith(b"\r"):
                    piece, carry = piece[:-1], b"\r"
                if piece:
                    yield piece.replace(b"\r\n", b"\n")
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if carry:
        yield carry


def _newlines(path: Path, count: int, chunk_bytes: int) -> Iterator[tuple[Path, bytes]]:
    while count > 0:
        yield path, b"\n" * min(count, chunk_bytes)
        count -= chunk_bytes


def _build(files: list[Path], kind: str, max_chars: int | None, chunk_bytes: int, ids_path: Path) -> dict:
    """Write the ids file (atomically) and return its description."""
    if kind == "char":
        tokenizer = tok.CharTokenizer(_characters(files, max_chars, chunk_bytes))
        pieces = _char_ids(files, tokenizer, max_chars, chunk_bytes)
    else:
        tokenizer = tok.ByteTokenizer()
        pieces = _byte_ids(files, max_chars, chunk_bytes)
    dtype = _smallest_dtype(tokenizer.size)

    def write(handle) -> None:
        for ids in pieces:
            handle.write(ids.astype(dtype).tobytes())

    write_atomically(ids_path, write)
    length = ids_path.stat().st_size // dtype.itemsize
    digest = ""
    if length:   # hashed from the file just written (still in the page cache), now that its length is known
        vocabulary = np.frombuffer("".join(tokenizer.vocabulary).encode(), np.uint8)
        digest = file_digest(ids_path, dtype, length, vocabulary)
    return {"format": FORMAT, "kind": kind, "vocabulary": tokenizer.vocabulary, "dtype": dtype.str,
            "length": length, "digest": digest}


def _decoded(files: list[Path], chunk_bytes: int) -> Iterator[str]:
    """The joined text, decoded piece by piece (one decoder per file); a non-UTF-8 file is named."""
    decoder, current = None, None
    for path, piece in joined_chunks(files, chunk_bytes):
        if path is not current:
            if decoder is not None:
                yield _decode(decoder, b"", current, chunk_bytes, final=True)
            decoder, current = codecs.getincrementaldecoder("utf-8")(), path
        yield _decode(decoder, piece, path, chunk_bytes)
    if decoder is not None:
        yield _decode(decoder, b"", current, chunk_bytes, final=True)


def _decode(decoder, piece: bytes, path: Path, chunk_bytes: int, final: bool = False) -> str:
    try:
        return decoder.decode(piece, final)
    except UnicodeDecodeError:
        raise not_utf8(path, chunk_bytes) from None


def not_utf8(path: Path, chunk_bytes: int = CHUNK_BYTES) -> DataError:
    """The error naming the first byte of `path` (an offset in the file as stored) that is not UTF-8."""
    decoder, offset = codecs.getincrementaldecoder("utf-8")(), 0
    problem = "invalid data"
    try:
        with open(path, "rb") as handle:
            while True:
                raw = handle.read(chunk_bytes)
                try:
                    decoder.decode(raw, final=not raw)
                except UnicodeDecodeError as exc:
                    # exc.start counts from the bytes the decoder held over from the previous chunk
                    held = len(exc.object) - len(raw)
                    offset, problem = offset + exc.start - held, exc.reason
                    break
                if not raw:
                    break
                offset += len(raw)
    except OSError as exc:
        return DataError(f"{path}: cannot read ({exc.strerror or exc})")
    return DataError(f"{path} is not UTF-8 text (byte {offset}: {problem}); convert it, or use "
                     "--set data.tokenizer=byte")


def _characters(files: list[Path], max_chars: int | None, chunk_bytes: int) -> list[str]:
    """Pass 1: every file decoded (the check); the sorted characters of the first max_chars, as
    `sorted(set(text[:max_chars]))` gives them."""
    seen = np.zeros(0x110000, dtype=bool)
    count = 0
    for text in _decoded(files, chunk_bytes):
        if max_chars is not None and count >= max_chars:
            continue                         # past max_chars: decoded only to check the file
        if max_chars is not None:
            text = text[: max_chars - count]
        seen[np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)] = True
        count += len(text)
    return [chr(code) for code in np.flatnonzero(seen)]


def _char_ids(files: list[Path], tokenizer: tok.CharTokenizer, max_chars: int | None,
              chunk_bytes: int) -> Iterator[np.ndarray]:
    """Pass 2: the ids of the first max_chars characters, a chunk at a time."""
    count = 0
    for text in _decoded(files, chunk_bytes):
        if max_chars is not None:
            text = text[: max_chars - count]
        if text:
            yield tokenizer.encode(text)
            count += len(text)
        if max_chars is not None and count >= max_chars:
            return


def _byte_ids(files: list[Path], max_chars: int | None, chunk_bytes: int) -> Iterator[np.ndarray]:
    count = 0
    for _, piece in joined_chunks(files, chunk_bytes):
        if max_chars is not None:
            piece = piece[: max_chars - count]
        if piece:
            yield np.frombuffer(piece, dtype=np.uint8)
            count += len(piece)
        if max_chars is not None and count >= max_chars:
            return


def file_digest(path: Path, dtype: np.dtype, length: int, vocabulary: np.ndarray, chunk: int = CHUNK_BYTES) -> str:
    """`cache.array_digest(ids.astype(np.int32), vocabulary)` of the ids stored in `path`, read a chunk at a
    time with plain reads (a memmap would leave every page it touched in this process's resident set)."""
    h = hashlib.sha256()
    h.update(str((np.dtype(np.int32).str, (length,))).encode())
    with open(path, "rb") as handle:
        while raw := handle.read(chunk * dtype.itemsize):
            h.update(np.frombuffer(raw, dtype=dtype).astype(np.int32).tobytes())
    h.update(str((vocabulary.dtype.str, vocabulary.shape)).encode())
    h.update(vocabulary.tobytes())
    return h.hexdigest()[:16]


def _smallest_dtype(size: int) -> np.dtype:
    return np.dtype(np.uint8 if size <= 1 << 8 else np.uint16 if size <= 1 << 16 else np.uint32)


def _complete(ids_path: Path, meta: dict) -> bool:
    try:
        return ids_path.stat().st_size == meta["length"] * np.dtype(meta["dtype"]).itemsize
    except (OSError, KeyError, TypeError):
        return False


def _read_meta(path: Path) -> dict | None:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == FORMAT else None


def _stat(path: Path) -> os.stat_result:
    try:
        return os.stat(path)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
