"""Prepared arrays cached on disk so a second run starts in seconds.

Writes go to a temporary file then `os.replace`, so concurrent runs never read a half-written cache.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
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
        except (OSError, ValueError):
            path.unlink(missing_ok=True)  # a damaged cache entry is rebuilt, not trusted
    arrays = build()
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return arrays, False


def array_digest(*arrays: np.ndarray) -> str:
    """A stable content hash of arrays, logged as the dataset digest."""
    h = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        h.update(str((array.dtype.str, array.shape)).encode())
        h.update(array.tobytes())
    return h.hexdigest()[:16]
