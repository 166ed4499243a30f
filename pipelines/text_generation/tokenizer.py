"""Text <-> token ids, outside the model (pure NumPy, so it runs on any Keras backend without TensorFlow).

`char`: one token per distinct character of the corpus (65 for Tiny Shakespeare), nanoGPT's choice.
`byte`: the 256 UTF-8 byte values; any text can be encoded, at the cost of longer sequences for
non-ASCII text.

Characters outside a char vocabulary are an error, always (training text can't contain them: the
vocabulary is built from the whole corpus; prompts get a message listing them). Silently dropping or
mapping them to an "unknown" token the model never saw would generate from a prompt the user did not
write.
"""
from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import numpy as np

from deepsuite.common.errors import DataError

TOKENIZER_FILE = "tokenizer.json"


class Tokenizer:
    kind: str
    vocabulary: list[str]

    @property
    def size(self) -> int:
        return len(self.vocabulary)

    def encode(self, text: str, what: str = "text") -> np.ndarray:
        raise NotImplementedError

    def decode(self, ids) -> str:
        raise NotImplementedError

    def to_dict(self) -> dict:
        return {"kind": self.kind, "vocabulary": self.vocabulary}

    def save(self, folder: Path) -> Path:
        path = Path(folder) / TOKENIZER_FILE
        path.write_text(json.dumps(self.to_dict(), ensure_ascii=False), encoding="utf-8")
        return path


class CharTokenizer(Tokenizer):
    kind = "char"

    def __init__(self, vocabulary: list[str]):
        self.vocabulary = list(vocabulary)
        self.index = {ch: i for i, ch in enumerate(self.vocabulary)}
        codes = np.array([ord(ch) for ch in self.vocabulary], dtype=np.int64)
        self._table = np.full(max(codes.max(initial=0) + 1, 1), -1, dtype=np.int32)
        self._table[codes] = np.arange(len(codes), dtype=np.int32)

    @classmethod
    def fit(cls, text: str) -> "CharTokenizer":
        return cls(sorted(set(text)))

    def encode(self, text: str, what: str = "text") -> np.ndarray:
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        ids = np.where(codes < len(self._table), self._table[np.minimum(codes, len(self._table) - 1)], -1)
        if (ids < 0).any():
            unknown = sorted({text[i] for i in np.flatnonzero(ids < 0)})
            shown = ", ".join(f"{ch!r} ({_name(ch)})" for ch in unknown[:8]) + (" ..." if len(unknown) > 8 else "")
            raise DataError(f"{what} has {len(unknown)} character(s) outside the model's {self.size}-character "
                            f"vocabulary: {shown}; remove them (the vocabulary is: {''.join(self.vocabulary)!r}) "
                            "or train with --set data.tokenizer=byte for any text")
        return ids.astype(np.int32)

    def decode(self, ids) -> str:
        return "".join(self.vocabulary[int(i)] for i in ids)


class ByteTokenizer(Tokenizer):
    kind = "byte"
    vocabulary = [f"<0x{b:02X}>" for b in range(256)]

    def encode(self, text: str, what: str = "text") -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int32)

    def decode(self, ids) -> str:
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")


def fit(kind: str, text: str) -> Tokenizer:
    return CharTokenizer.fit(text) if kind == "char" else ByteTokenizer()


def from_dict(data: dict) -> Tokenizer:
    kind = data.get("kind")
    if kind == "char":
        return CharTokenizer(data["vocabulary"])
    if kind == "byte":
        return ByteTokenizer()
    raise DataError(f"unknown tokenizer kind {kind!r} in the exported model (expected char or byte)")


def load(folder: Path) -> Tokenizer:
    path = Path(folder) / TOKENIZER_FILE
    if not path.exists():
        raise DataError(f"{path} is missing; it is written by `deepsuite run text-generation` next to model.keras")
    return from_dict(json.loads(path.read_text(encoding="utf-8")))


def _name(ch: str) -> str:
    return unicodedata.name(ch, f"U+{ord(ch):04X}")
