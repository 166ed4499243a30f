"""A TFDS image split streamed from a uint8 memmap: one bounded pass writes it, batches read rows from it.

`load_tfds_supervised` asks TFDS for a whole split as one array (`batch_size=-1`): imagenet2012 at 224 px
is 190 GB of it. Here one pass over `builder.as_dataset(split, as_supervised=True)` (tf.data, small batches,
so memory holds a batch) prepares every image exactly as the in-memory path does (`prepare(batch)`, i.e.
labeled_images.conform_images: channels converted, then resized with Pillow), checks its shape, and writes
it in order into an `.npy` file (opened as a memmap afterwards), with the labels and a content digest beside
it. The pass runs once: its files are cached under <cache>/tfds/, keyed by the dataset's name, version,
split, data_dir (and its prepared files' sizes and times), image size and channels. It writes into a
temporary folder that is renamed into place only when complete, so an interrupted pass leaves no entry that
looks finished (its folder is removed by the next pass once the process that wrote it is gone); an entry
damaged since is rebuilt.

`MemmapImages` then stands for the split: an `image_files.ImageFiles` (so `ImageFileBatches`,
`prediction_input` and everything that streams folders takes it as it is) whose "files" are rows of the
memmap. Indexing with rows gives another `MemmapImages` (nothing read); `read()` / `np.asarray` copies
those rows out. Reading rows needs NumPy only: the batches afterwards use neither TFDS nor TensorFlow.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from deepsuite.common.data.cache import cache_root, ensure_writable, key_digest
from deepsuite.common.data.image_files import ImageFiles, unreadable
from deepsuite.common.errors import DataError
from deepsuite.common.workers import default_workers

PASS_BATCH = 64           # examples decoded and prepared at a time by the pass
FORMAT_VERSION = 1        # part of the cache key: bump when what the pass writes changes


class MemmapImages(ImageFiles):
    """Rows of an N x H x W x C uint8 `.npy` file standing for that array, read only when asked."""

    def __init__(self, file: str | Path, rows: np.ndarray | None = None, _array: np.ndarray | None = None):
        self.file = Path(file)
        self._array = _array
        array = self.array
        if array.dtype != np.uint8 or array.ndim != 4:
            raise DataError(f"{self.file}: expected N x H x W x C uint8 images, found {array.dtype} {array.shape}; "
                            "delete it to rebuild the cache entry")
        self.rows = np.arange(len(array), dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
        self.size, self.channels = (int(array.shape[1]), int(array.shape[2])), int(array.shape[3])
        self.reader = None

    @property
    def array(self) -> np.ndarray:
        """The whole file as a read-only memmap (opened once per process; pages are read on access)."""
        if self._array is None:
            self._array = np.load(self.file, mmap_mode="r")
        return self._array

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.rows), *self.size, self.channels)

    @property
    def paths(self) -> np.ndarray:
        """Where each image lives, as `file[row]` (what ImageFiles names by path)."""
        return np.asarray([f"{self.file}[{row}]" for row in self.rows], dtype=object)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return np.array(self.array[self.rows[index]])
        return MemmapImages(self.file, self.rows[index], self.array)

    def read(self, threads: int | None = None) -> np.ndarray:
        """The rows (in order) copied into one array; `threads` is accepted for ImageFiles' sake (a copy
        out of the page cache needs none)."""
        rows = self.rows
        if len(rows) and rows[-1] - rows[0] == len(rows) - 1 and np.all(np.diff(rows) == 1):
            return np.array(self.array[rows[0]:rows[-1] + 1])   # contiguous: one slice, no fancy index
        return self.array[rows]

    def __getstate__(self):
        return {"file": self.file, "rows": self.rows}            # a worker process opens its own memmap

    def __setstate__(self, state):
        self.__init__(state["file"], state["rows"])

    def __repr__(self) -> str:
        return f"MemmapImages({len(self)} rows of {self.file} as {self.shape[1:]} uint8)"


@dataclass
class MemmapSplit:
    images: MemmapImages
    labels: np.ndarray
    digest: str           # content digest of the prepared images and labels (lineage, resume checks)
    written: bool         # this call ran the pass (False: the cache entry was reused)


def memmap_split(builder, split: str, examples: int, prepare: Callable[[np.ndarray], np.ndarray],
                 shape: tuple[int, int, int], settings: dict, cache_dir: str | None = None,
                 fixed_size: bool = True, threads: int | None = None) -> MemmapSplit:
    """The split prepared into the memmap cache (the pass runs only when no finished entry matches).

    `prepare(images)` turns decoded images (n x h x w x c) into the n x H x W x C uint8 images the in-memory
    path would have; `shape` is the (H, W, C) every image must come out as; `settings` (image size, channels)
    join the dataset's identity in the cache key. `fixed_size`: the dataset's images all have one size, so
    tf.data batches them; else they are decoded one by one. `threads` prepare parts of a batch at once
    (Pillow releases the GIL while it resizes)."""
    parent = ensure_writable(cache_root(cache_dir) / "tfds", "cache")
    key = {**dataset_identity(builder), "split": split, "format": FORMAT_VERSION, **settings}
    entry = parent / f"{builder.info.name}-{split}-{key_digest(key)}"
    if _finished(entry):
        try:
            return _opened(entry, examples, shape, written=False)
        except (OSError, ValueError, KeyError, DataError) as exc:   # truncated or damaged since: rebuilt
            print(f"note: rebuilding damaged cache entry {entry} ({type(exc).__name__}: {exc})", file=sys.stderr)
    _remove_abandoned(parent, entry.name)
    shutil.rmtree(entry, ignore_errors=True)   # damaged, or a folder with files missing: redone
    _write_pass(builder, split, examples, prepare, tuple(shape), entry, fixed_size,
                threads or default_workers())
    return _opened(entry, examples, shape, written=True)


def _opened(entry: Path, examples: int, shape, written: bool) -> MemmapSplit:
    meta = json.loads((entry / "meta.json").read_text())
    images, labels = MemmapImages(entry / "images.npy"), np.load(entry / "labels.npy")
    if images.shape != (examples, *shape) or labels.shape != (examples,):
        raise ValueError(f"holds {images.shape[0]} x {images.shape[1:]} images and {len(labels)} labels, "
                         f"expected {examples} x {tuple(shape)}")
    return MemmapSplit(images, labels, meta["digest"], written)


def dataset_identity(builder) -> dict:
    """What names a prepared TFDS dataset for a cache key: name, version, data_dir and its files' (name, bytes,
    mtime), so preparing it again (or another copy in another data_dir) gives a new entry."""
    root = Path(builder.data_dir)
    files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in root.iterdir() if p.is_file()) \
        if root.is_dir() else []
    return {"name": builder.info.name, "version": str(builder.info.version), "data_dir": str(root.resolve()),
            "files": files}


def _finished(entry: Path) -> bool:
    return all((entry / name).is_file() for name in ("images.npy", "labels.npy", "meta.json"))


def _remove_abandoned(parent: Path, name: str) -> None:
    """Temporary folders of this entry whose writing process has gone (killed mid-pass)."""
    for tmp in parent.glob(f".{name}.*.tmp"):
        try:
            pid = int(tmp.name.rsplit(".", 3)[-3])
            os.kill(pid, 0)        # still running (another run writing the same entry): leave it
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except (ValueError, IndexError, PermissionError):
            continue


def _write_pass(builder, split, examples, prepare, shape, entry: Path, fixed_size: bool, threads: int) -> None:
    name = builder.info.name
    need = examples * int(np.prod(shape))
    free = shutil.disk_usage(entry.parent).free
    if need > free:
        raise DataError(f"TFDS dataset {name!r} split {split!r} needs {need / 2**30:.2f} GiB in the cache "
                        f"{entry.parent} to stream from, {free / 2**30:.2f} GiB is free; set data.cache_dir (or "
                        "$DEEPSUITE_CACHE_DIR) to a larger disk, or a smaller data.image_size")
    tmp = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{entry.name}.{os.getpid()}.", suffix=".tmp"))
    try:
        labels = np.empty(examples, dtype=np.int64)
        digest = hashlib.sha256(f"{examples}x{shape}".encode())
        problems: list[str] = []
        filled = 0
        # written in order through a file handle (the .npy format np.load maps): a full disk is an OSError here,
        # where stores into a memmap would be a SIGBUS
        with open(tmp / "images.npy", "wb") as images, ThreadPoolExecutor(threads) as pool:
            np.lib.format.write_array_header_1_0(images, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)),
                                                          "fortran_order": False, "shape": (examples, *shape)})
            for parts, y in _decoded(builder, split, fixed_size, threads):
                if filled + len(y) > examples:
                    raise DataError(f"TFDS dataset {name!r} split {split!r} has more than the {examples} examples "
                                    "its metadata lists; prepare it again (tfds build) or delete its data_dir")
                starts = filled + np.cumsum([0] + [len(p) for p in parts[:-1]])
                ready = np.concatenate(list(pool.map(
                    lambda part, at: _prepared(part, prepare, shape, split, int(at), problems), parts, starts)))
                images.write(ready.tobytes())
                labels[filled:filled + len(y)] = y
                digest.update(ready.tobytes())
                digest.update(np.asarray(y, dtype=np.int64).tobytes())
                filled += len(y)
        if problems:
            raise unreadable(sorted(problems, key=_row), f" in TFDS dataset {name!r}")
        if filled != examples:
            raise DataError(f"TFDS dataset {name!r} split {split!r} gave {filled} examples, its metadata lists "
                            f"{examples}; prepare it again (tfds build) or delete its data_dir")
        np.save(tmp / "labels.npy", labels)
        (tmp / "meta.json").write_text(json.dumps({"digest": digest.hexdigest()[:16], "examples": examples,
                                                   "shape": list(shape)}))
        for file in ("images.npy", "labels.npy", "meta.json"):
            with open(tmp / file, "rb+") as handle:
                os.fsync(handle.fileno())
        try:
            os.replace(tmp, entry)   # atomic; fails if another run finished the same entry first
        except OSError:
            if not _finished(entry):
                raise
    except OSError as exc:
        raise DataError(f"could not write the streamed TFDS split {name}/{split} under {entry.parent} "
                        f"({exc.strerror or exc}); free disk space or set data.cache_dir to another disk") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _row(problem: str) -> int:
    try:
        return int(problem.split("[", 1)[1].split(":", 1)[0].rstrip("]"))
    except (IndexError, ValueError):
        return 0


def _decoded(builder, split: str, fixed_size: bool, threads: int):
    """([image batches], labels) of the split in TFDS's order (the order `batch_size=-1` gives): PASS_BATCH
    examples at a time, in up to `threads` parts that are prepared independently."""
    import tensorflow_datasets as tfds

    try:
        ds = builder.as_dataset(split=split, as_supervised=True)
        if fixed_size:
            for x, y in tfds.as_numpy(ds.batch(PASS_BATCH).prefetch(2)):
                yield np.array_split(x, min(threads, len(x))), np.asarray(y)
        else:
            parts, labels = [], []
            for x, y in tfds.as_numpy(ds.prefetch(PASS_BATCH)):
                parts.append(x[None])
                labels.append(y)
                if len(parts) == PASS_BATCH:
                    yield parts, np.asarray(labels)
                    parts, labels = [], []
            if parts:
                yield parts, np.asarray(labels)
    except DataError:
        raise
    except Exception as exc:  # a damaged record: tf.errors.DataLossError, InvalidArgumentError, ...
        first = (str(exc).splitlines() or [""])[0][:200]
        raise DataError(f"TFDS dataset {builder.info.name!r} split {split!r} could not be read "
                        f"({type(exc).__name__}: {first}); prepare it again (tfds build) or delete its "
                        "data_dir") from None


def _prepared(x: np.ndarray, prepare, shape, split: str, start: int, problems: list[str]) -> np.ndarray:
    """`prepare(x)` checked: images that do not come out as `shape` are named (split[row]) and zeroed."""
    try:
        ready = prepare(x)
    except Exception as exc:  # noqa: BLE001 - one bad image must not hide the others: retry them one by one
        if len(x) == 1:
            problems.append(f"{split}[{start}]: {type(exc).__name__}: {str(exc)[:120]}")
            return np.zeros((1, *shape), dtype=np.uint8)
        return np.concatenate([_prepared(x[i:i + 1], prepare, shape, split, start + i, problems)
                               for i in range(len(x))])
    if ready.shape[1:] != tuple(shape):
        where = f"{split}[{start}]" if len(x) == 1 else f"{split}[{start}:{start + len(x)}]"
        problems.append(f"{where}: images come out as {ready.shape[1:]}, expected {tuple(shape)} "
                        "(set data.image_size and data.channels)")
        return np.zeros((len(x), *shape), dtype=np.uint8)
    return ready
