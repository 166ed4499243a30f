"""Image files that stay on disk until a batch needs them: a lazy array, the header pass, the stream decision.

A folder of 100,000 photos at 224 x 224 is 15 GB of uint8 once decoded; `ImageFiles` holds only the paths
and decodes on demand. It indexes like the array it stands for: slicing or fancy indexing gives another
`ImageFiles` (nothing read), an integer gives one decoded image and `np.asarray(files)` decodes them all
(a handful: the errors grid, an input example). Every image goes through the reader of the in-memory path
(`images.read_image`, or the one a pipeline passes, e.g. medical imaging's centre crop with DICOM), so a
streamed batch has exactly the pixels the arrays would have had.

Before training, `check_headers` opens every file's header (format, size; no pixel decoding) and names
every bad one at once: not an image, empty, or over `images.MAX_PIXELS`. A file whose body is damaged past
its header is named when its batch decodes it (a DataError with the path).
"""
from __future__ import annotations

import hashlib
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np

from deepsuite.common.errors import DataError
from deepsuite.common.data.images import MAX_PIXELS, read_image
from deepsuite.common.workers import default_workers

# Stream when the decoded splits would take more than this share of the memory available now: the model,
# the framework and the batches in flight need the rest. Loading arrays peaks at about twice the decoded
# size (the decoded images and the array they are stacked into, then the split copies), so arrays asked for
# explicitly (data.stream=false) are refused above REFUSE_FRACTION, where that peak would pass 80% of the
# memory and push the machine into swap, and warned of above STREAM_FRACTION.
STREAM_FRACTION = 0.25
REFUSE_FRACTION = 0.4
BUDGET_ENV = "DEEPSUITE_MEMORY_BUDGET"   # e.g. 8G: the memory the data may assume (a shared machine's share)


class ImageFiles:
    """N image files standing for an N x H x W x C uint8 array (each file resized/converted when read).

    `reader(path, channels=, size=)` decodes one file to H x W x C uint8 (default `images.read_image`)."""

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, paths, size: tuple[int, int], channels: int, reader: Callable | None = None):
        self.paths = np.asarray([str(p) for p in paths], dtype=object)
        self.size, self.channels = (int(size[0]), int(size[1])), int(channels)
        self.reader = reader or read_image

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.paths), *self.size, self.channels)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return self._read_one(self.paths[index])
        return ImageFiles(self.paths[index], self.size, self.channels, self.reader)

    def _read_one(self, path: str) -> np.ndarray:
        return self.reader(path, channels=self.channels, size=self.size)

    def read(self, threads: int | None = None) -> np.ndarray:
        """Decode every file (in order) into one array; `threads` > 1 decodes that many files at a time."""
        out = np.empty(self.shape, dtype=np.uint8)
        if threads and threads > 1 and len(self) > 1:
            with ThreadPoolExecutor(min(int(threads), len(self))) as pool:
                for i, image in enumerate(pool.map(self._read_one, self.paths)):
                    out[i] = image
            return out
        for i, path in enumerate(self.paths):
            out[i] = self._read_one(path)
        return out

    def __array__(self, dtype=None, copy=None):
        array = self.read()
        return array if dtype is None else array.astype(dtype)

    def __repr__(self) -> str:
        return f"ImageFiles({len(self)} files as {self.shape[1:]} uint8)"


def check_headers(paths, threads: int | None = None) -> None:
    """Open every file's header (no decoding) and raise one DataError naming every bad file."""
    paths = [str(p) for p in paths]
    workers = threads or default_workers()
    with ThreadPoolExecutor(workers) as pool:
        problems = [p for p in pool.map(image_header_problem, paths, chunksize=256) if p]
    if problems:
        raise unreadable(problems)


def unreadable(problems: list[str], where: str = "") -> DataError:
    """One error naming the first five bad files of a header pass and how many more there are."""
    more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    return DataError(f"{len(problems)} unreadable image(s){where}: " + "; ".join(problems[:5]) + more)


def image_header_problem(path: str) -> str | None:
    """What is wrong with an image file, from its header (None when nothing is)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
    except UnidentifiedImageError:
        return f"{path}: not an image file PIL can read"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return f"{path}: unreadable image ({exc})"
    if width == 0 or height == 0:
        return f"{path}: empty image (0 pixels)"
    if width * height > MAX_PIXELS:
        return f"{path}: image too large ({width}x{height} pixels)"
    return None


def listing_digest(paths, labels: np.ndarray, root: Path) -> str:
    """A digest of what the files are (relative path, byte size, modification time, label), for lineage and
    the resumed-run check, without reading the pixels."""
    h = hashlib.sha256()
    for path, label in zip(paths, labels):
        stat = os.stat(path)
        h.update(f"{os.path.relpath(path, root)}\0{stat.st_size}\0{stat.st_mtime_ns}\0{int(label)}\n".encode())
    return h.hexdigest()[:16]


def available_memory() -> int:
    """Bytes this process can still take: MemAvailable, capped by a cgroup (container) limit if one is set
    and by $DEEPSUITE_MEMORY_BUDGET (bytes, or with a K/M/G suffix) if set."""
    available = None
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except OSError:
        pass
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            available = 8 << 30  # unknown platform: assume a modest machine
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        if limit != "max":
            available = min(available, int(limit) - used)
    except (OSError, ValueError):
        pass
    budget = os.environ.get(BUDGET_ENV, "").strip().upper()
    if budget:
        scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(budget[-1], 1)
        try:
            available = min(available, int(float(budget.rstrip("KMG")) * scale))
        except ValueError:
            raise DataError(f"{BUDGET_ENV}={budget!r} is not a size (e.g. 8G, 512M or bytes)") from None
    return max(available, 0)


def choose_streaming(stream: bool | None, decoded_bytes: int, what: str, available: int | None = None) -> bool:
    """Whether to stream `what` (decoded_bytes as arrays): `stream` when set, else above STREAM_FRACTION of the
    available memory. Arrays asked for above REFUSE_FRACTION are refused; above STREAM_FRACTION, warned of."""
    available = available_memory() if available is None else available
    need = f"{what} needs {decoded_bytes / 2**30:.2f} GiB as arrays, {available / 2**30:.2f} GiB is available"
    if stream is None:
        return decoded_bytes > STREAM_FRACTION * available
    if not stream and decoded_bytes > REFUSE_FRACTION * available:
        raise DataError(f"{need}: refusing to load it into memory; set data.stream=true (or leave data.stream "
                        "unset to choose automatically)")
    if not stream and decoded_bytes > STREAM_FRACTION * available:
        print(f"warning: {need}; loading it anyway as data.stream=false asks (data.stream=true keeps memory "
              "bounded)", file=sys.stderr)
    return bool(stream)
