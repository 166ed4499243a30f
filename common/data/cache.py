"""Prepared arrays cached on disk so a second run starts in seconds.

Writes go to a temporary file, are flushed to disk (fsync) and then renamed (`os.replace`), so concurrent
runs never read a half-written entry and a crash cannot leave one under the final name. An entry that
cannot be read anyway (emptied, truncated or damaged by hand or by a full disk) is rebuilt, with one line
saying so, instead of failing every later run.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from deepsuite.common.errors import DataError

CACHE_ENV = "DEEPSUITE_CACHE_DIR"


def cache_root(override: str | Path | None = None) -> Path:
    """The data cache directory: config value, else $DEEPSUITE_CACHE_DIR, else ~/.cache/deepsuite."""
    root = override or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "deepsuite"
    return Path(root).expanduser()


def ensure_writable(directory: Path, what: str) -> Path:
    """Create `directory` or fail now, before any training, with a message saying how to fix it."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise DataError(
            f"{what} directory {directory} is not writable ({exc.strerror or exc}); "
            f"choose another with the config or {CACHE_ENV if what == 'cache' else 'the matching option'}"
        ) from None
    return directory


def key_digest(key: Any) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cached_arrays(
    name: str, key: Any, build: Callable[[], dict[str, np.ndarray]], root: Path | None = None
) -> tuple[dict[str, np.ndarray], bool]:
    """Return (arrays, was_cached): `build()` runs only when no cache entry matches `key`."""
    directory = ensure_writable(cache_root(root) / "arrays", "cache")
    path = directory / f"{name}-{key_digest(key)}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as stored:
                return {k: stored[k] for k in stored.files}, True
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
            print(f"note: rebuilding damaged cache entry {path} ({type(exc).__name__}: {exc})", file=sys.stderr)
            path.unlink(missing_ok=True)  # a damaged cache entry is rebuilt, not trusted
    arrays = build()
    write_atomically(path, lambda handle: np.savez(handle, **arrays))
    return arrays, False


def write_atomically(path: Path, write: Callable[[Any], None]) -> None:
    """`write(handle)` into a temporary file beside `path`, fsync it, then rename it to `path`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def array_digest(*arrays: np.ndarray) -> str:
    """A stable content hash of arrays, logged as the dataset digest."""
    h = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        h.update(str((array.dtype.str, array.shape)).encode())
        h.update(array.tobytes())
    return h.hexdigest()[:16]
