"""Labelled image datasets as uint8 arrays: Fashion-MNIST and friends, TFDS names, class folders.

Source strings (the `data.source` config value):
  fashion_mnist            Debian's dataset-fashion-mnist files, else the Keras download
  mnist | cifar10 | cifar100 | fashion_mnist via keras:<name>   Keras downloads (internet)
  tfds:<name>              TensorFlow Datasets (internet, or a prepared data_dir)
  folder:<path>            <path>/<class>/*.png, or <path>/{train,test}/<class>/*.png

A folder is read into arrays, or streamed (`image_files.ImageFiles`: paths decoded per batch) when asked
(`stream=True`) or, with `stream=None`, when its decoded size is over a share of the available memory
(`image_files.choose_streaming`). Both take the same files in the same order with the same split.
A TFDS dataset is decided the same way, from its metadata (examples x size x channels): streamed, one pass
prepares its train and test splits into uint8 memmaps in the cache (`tfds_images.py`) with the pixels the
arrays get here (`conform_images`), and the splits hold lazy rows of them (`tfds_images.MemmapImages`).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepsuite.common.data.cache import array_digest, cached_arrays
from deepsuite.common.data.idx import read_idx
from deepsuite.common.data.image_files import ImageFiles, check_headers, choose_streaming, listing_digest
from deepsuite.common.data.images import list_class_folders, read_image
from deepsuite.common.data.sources import Source, first_available
from deepsuite.common.errors import DataError

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
KERAS_DATASETS = {
    "fashion_mnist": FASHION_MNIST_CLASSES,
    "mnist": [str(i) for i in range(10)],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
    "cifar100": [str(i) for i in range(100)],
}
NAMED = ("fashion_mnist", "mnist", "cifar10", "cifar100")


@dataclass
class LabeledImages:
    train_x: np.ndarray      # N x H x W x C uint8
    train_y: np.ndarray      # N int
    test_x: np.ndarray
    test_y: np.ndarray
    class_names: list[str]
    source: str              # which source was used, e.g. "debian:/usr/share/datasets/fashion-mnist"
    name: str
    files_digest: str | None = None   # streamed folders: a digest of the file listing (image_files)

    @property
    def digest(self) -> str:
        return self.files_digest or array_digest(self.train_x, self.train_y, self.test_x, self.test_y)

    @property
    def streamed(self) -> bool:
        return isinstance(self.train_x, ImageFiles)


def load(source: str, image_size: tuple[int, int] | None = None, channels: int | None = None,
         cache_dir: str | None = None, tfds_data_dir: str | None = None, download: bool = True,
         stream: bool | None = False) -> LabeledImages:
    """`stream` applies to folders and TFDS datasets: True streams, False loads arrays (refused when far over
    the memory available), None chooses by size."""
    kind, _, arg = source.partition(":")
    if source in NAMED:
        candidates = ([_debian_fashion_mnist()] if source == "fashion_mnist" else []) + [_keras(source)]
        name = source
    elif kind == "keras" and arg in KERAS_DATASETS:
        candidates, name = [_keras(arg)], arg
    elif kind == "tfds" and arg:
        builder, tfds_layout = _tfds_builder(arg, tfds_data_dir, download)
        shape = _tfds_shape(arg, tfds_layout, image_size, channels)
        decoded = sum(tfds_layout.examples.get(split, 0) for split in ("train", "test")) * int(np.prod(shape))
        if choose_streaming(stream, decoded, f"TFDS dataset {arg}"):
            return _tfds_streamed(arg, builder, tfds_layout, shape, image_size, channels, cache_dir)
        if None in tfds_layout.input_shape:   # TFDS cannot stack images of varying size into one array
            return _materialised(_tfds_streamed(arg, builder, tfds_layout, shape, image_size, channels, cache_dir))
        candidates, name = [_tfds(arg, builder)], arg
    elif kind == "folder" and arg:
        size, root = tuple(image_size) if image_size else (64, 64), Path(arg).expanduser()
        layout = folder_layout(root)
        decoded = (len(layout.train_paths) + len(layout.test_paths)) * size[0] * size[1] * (channels or 3)
        if choose_streaming(stream, decoded, f"folder {root}"):
            return _folder_files(layout, size, channels or 3)
        candidates, name = [_folder(layout, size, channels or 3)], root.name
    else:
        raise DataError(f"unknown image data source {source!r}; use one of {', '.join(NAMED)}, "
                        f"keras:<{'|'.join(KERAS_DATASETS)}>, tfds:<name>, folder:<path>")

    def build() -> dict[str, np.ndarray]:
        arrays, used = first_available(name, candidates)
        arrays["source"] = np.array(used.name)
        return arrays

    cache_key = {"source": source, "size": image_size, "channels": channels, "v": 1}
    if kind == "tfds":  # which prepared copy: its data_dir and files
        from deepsuite.common.data.tfds_images import dataset_identity

        cache_key["tfds"] = dataset_identity(builder)
    if kind == "folder":  # a folder's content can change: key on its listing too
        cache_key["listing"] = sorted((str(p), p.stat().st_mtime, p.stat().st_size)
                                      for p in Path(arg).expanduser().rglob("*") if p.is_file())
    arrays, _ = cached_arrays(f"images-{name}", cache_key, build, Path(cache_dir) if cache_dir else None)
    if "class_names" in arrays:
        class_names = [str(c) for c in arrays["class_names"]]
    elif kind == "tfds":
        class_names = _tfds_class_names(tfds_layout, arrays["train_y"], arrays["test_y"])
    else:
        class_names = KERAS_DATASETS[name]
    images = LabeledImages(arrays["train_x"], arrays["train_y"].astype(np.int64), arrays["test_x"],
                           arrays["test_y"].astype(np.int64), class_names, str(arrays["source"]), name)
    return _conform(images, image_size, channels)


def _conform(images: LabeledImages, image_size, channels) -> LabeledImages:
    """Give every source the same NxHxWxC shape; resize/convert only when the config asks."""
    for attr in ("train_x", "test_x"):
        setattr(images, attr, conform_images(getattr(images, attr), image_size, channels))
    return images


def conform_images(x: np.ndarray, image_size, channels) -> np.ndarray:
    """N x H x W [x C] images as contiguous N x H x W x C uint8: channels converted, then resized (Pillow,
    bilinear) when the config asks. Each image is converted on its own, so a batch comes out as the same
    images of the whole array do (the streamed TFDS pass prepares its batches with this)."""
    if x.ndim == 3:
        x = x[..., None]
    if channels == 3 and x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    elif channels == 1 and x.shape[-1] == 3:
        x = np.round(x @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)[..., None]
    if image_size and tuple(x.shape[1:3]) != tuple(image_size):
        x = _resize(x, tuple(image_size))
    return np.ascontiguousarray(x.astype(np.uint8))


def _resize(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    out = np.empty((len(x), *size, x.shape[-1]), dtype=np.uint8)
    for i, image in enumerate(x):
        pil = Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image)
        resized = np.asarray(pil.resize((size[1], size[0]), Image.BILINEAR))
        out[i] = resized[..., None] if resized.ndim == 2 else resized
    return out


def _debian_fashion_mnist() -> Source:
    def load_files() -> dict[str, np.ndarray]:
        files = {key: DEBIAN_FASHION_MNIST / f"{stem}-idx{n}-ubyte.gz" for key, stem, n in (
            ("train_x", "train-images", 3), ("train_y", "train-labels", 1),
            ("test_x", "t10k-images", 3), ("test_y", "t10k-labels", 1))}
        missing = [str(p) for p in files.values() if not p.exists()]
        if missing:
            raise DataError(f"missing {', '.join(missing)}")
        return {key: read_idx(path) for key, path in files.items()}

    return Source(f"debian:{DEBIAN_FASHION_MNIST}", load_files,
                  hint="install it with: sudo apt-get install dataset-fashion-mnist")


def _keras(name: str) -> Source:
    def download() -> dict[str, np.ndarray]:
        import keras

        try:
            (train_x, train_y), (test_x, test_y) = getattr(keras.datasets, name).load_data()
        except Exception as exc:  # noqa: BLE001 - urllib/HTTP errors come in many types
            raise DataError(f"download failed ({type(exc).__name__}: {str(exc)[:160]})") from None
        return {"train_x": train_x, "train_y": np.ravel(train_y), "test_x": test_x, "test_y": np.ravel(test_y)}

    return Source(f"keras:{name}", download, hint="needs the internet")


def _tfds_builder(name: str, data_dir: str | None, download: bool):
    """The prepared TFDS builder and what its splits hold (metadata only, nothing decoded yet)."""
    def open_builder():
        from deepsuite.common.data.tfds_source import prepared_builder, supervised_layout

        builder = prepared_builder(name, data_dir=data_dir, download=download)
        layout = supervised_layout(builder)
        if "train" not in layout.examples or "test" not in layout.examples:
            raise DataError(f"TFDS dataset {name!r} has no train/test splits (found {sorted(layout.examples)})")
        return builder, layout

    return first_available(name, [Source(f"tfds:{name}", open_builder, hint="needs the internet or tfds_data_dir")])[0]


def _tfds_shape(name: str, layout, image_size, channels) -> tuple[int, int, int]:
    """(H, W, C) of the prepared images: the config's size and channels, else the dataset's."""
    stored = tuple(layout.input_shape)
    if len(stored) not in (2, 3):
        raise DataError(f"TFDS dataset {name!r}: its input feature has shape {stored}, not an image's")
    if image_size:
        height, width = image_size
    elif None in stored[:2]:
        raise DataError(f"TFDS dataset {name!r} has images of varying size {stored}; set data.image_size "
                        "(e.g. data.image_size=[224,224]) to resize them to one")
    else:
        height, width = stored[:2]
    depth = channels or (1 if len(stored) == 2 else stored[2] or 3)
    return int(height), int(width), int(depth)


def _tfds_class_names(layout, *labels: np.ndarray) -> list[str]:
    """The label feature's names, else the label values as text."""
    if layout.class_names:
        return list(layout.class_names)
    return [str(i) for i in range(int(max(int(y.max()) if len(y) else 0 for y in labels)) + 1)]


def _materialised(images: LabeledImages) -> LabeledImages:
    """A streamed dataset's images read into arrays (data.stream=false on images TFDS cannot stack)."""
    images.train_x, images.test_x = np.asarray(images.train_x), np.asarray(images.test_x)
    return images


def _tfds(name: str, builder) -> Source:
    def load_tfds() -> dict[str, np.ndarray]:
        from deepsuite.common.data.tfds_source import read_supervised

        return read_supervised(builder, ("train", "test"))

    return Source(f"tfds:{name}", load_tfds, hint="needs the internet or tfds_data_dir")


def _tfds_streamed(name: str, builder, layout, shape, image_size, channels, cache_dir) -> LabeledImages:
    """The train and test splits prepared once into memmaps (tfds_images.py) and streamed from them: the
    pixels `_conform` gives the arrays, in TFDS's order, every image checked before training."""
    from deepsuite.common.data.tfds_images import memmap_split

    def prepare(x: np.ndarray) -> np.ndarray:
        return conform_images(x, image_size, channels)

    fixed = None not in layout.input_shape   # one size: tf.data batches the examples
    settings = {"size": list(image_size) if image_size else None, "channels": channels}
    splits = {split: memmap_split(builder, split, layout.examples[split], prepare, shape, settings, cache_dir,
                                  fixed_size=fixed) for split in ("train", "test")}
    train, test = splits["train"], splits["test"]
    digest = hashlib.sha256(f"{train.digest}:{test.digest}".encode()).hexdigest()[:16]
    return LabeledImages(train.images, train.labels, test.images, test.labels,
                         _tfds_class_names(layout, train.labels, test.labels), f"tfds:{name}", name,
                         files_digest=digest)


@dataclass
class FolderLayout:
    """Which files a class folder holds, labelled and split into train/test (in the order both paths use)."""

    root: Path
    train_paths: np.ndarray
    train_y: np.ndarray
    test_paths: np.ndarray
    test_y: np.ndarray
    class_names: list[str]


def folder_layout(root: Path) -> FolderLayout:
    """<root>/{train,test}/<class>/ as they are, or <root>/<class>/ with a seeded 20% test share."""
    def flat(classes: dict[str, list[Path]], names: list[str], where: Path) -> tuple[np.ndarray, np.ndarray]:
        unknown = set(classes) - set(names)
        if unknown:
            raise DataError(f"{where}: class folders {sorted(unknown)} are not among the expected classes {names}")
        pairs = [(str(p), label) for label, n in enumerate(names) for p in classes.get(n, [])]
        return np.array([p for p, _ in pairs], dtype=object), np.array([y for _, y in pairs], dtype=np.int64)

    if (root / "train").is_dir() and (root / "test").is_dir():
        train = list_class_folders(root / "train")
        names = list(train)
        train_paths, train_y = flat(train, names, root / "train")
        test_paths, test_y = flat(list_class_folders(root / "test"), names, root / "test")
    else:
        classes = list_class_folders(root)
        names = list(classes)
        paths, y = flat(classes, names, root)
        order = np.random.default_rng(0).permutation(len(paths))
        n_test = max(1, int(round(0.2 * len(paths))))
        test, train = order[:n_test], order[n_test:]
        train_paths, train_y, test_paths, test_y = paths[train], y[train], paths[test], y[test]
    return FolderLayout(root, train_paths, train_y, test_paths, test_y, names)


def _folder(layout: FolderLayout, size: tuple[int, int], channels: int) -> Source:
    def read() -> dict[str, np.ndarray]:
        return {"train_x": _read_all(layout.train_paths, size, channels, layout.root), "train_y": layout.train_y,
                "test_x": _read_all(layout.test_paths, size, channels, layout.root), "test_y": layout.test_y,
                "class_names": np.array(layout.class_names)}

    return Source(f"folder:{layout.root}", read)


def _read_all(paths: np.ndarray, size: tuple[int, int], channels: int, root: Path) -> np.ndarray:
    """Every file decoded; all unreadable files are reported together, so one pass finds every bad file."""
    images, bad = [], []
    for path in paths:
        try:
            images.append(read_image(path, channels=channels, size=size))
        except DataError as exc:
            bad.append(str(exc))
    if bad:
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise DataError(f"{len(bad)} unreadable image(s) in {root}: " + "; ".join(bad[:5]) + more)
    return np.stack(images)


def _folder_files(layout: FolderLayout, size: tuple[int, int], channels: int) -> LabeledImages:
    """The folder streamed: paths, not pixels; every header checked now."""
    check_headers([*layout.train_paths, *layout.test_paths])
    paths = np.concatenate([layout.train_paths, layout.test_paths])
    digest = listing_digest(paths, np.concatenate([layout.train_y, layout.test_y]), layout.root)
    return LabeledImages(ImageFiles(layout.train_paths, size, channels), layout.train_y,
                         ImageFiles(layout.test_paths, size, channels), layout.test_y, layout.class_names,
                         f"folder:{layout.root}", layout.root.name, files_digest=digest)


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, held_out): `fraction` of every class held out, seeded."""
    rng = np.random.default_rng(seed)
    keep, held = [], []
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        n_held = int(round(fraction * len(members)))
        if fraction > 0 and len(members) > 1:
            n_held = max(1, n_held)
        held.append(members[:n_held])
        keep.append(members[n_held:])
    return rng.permutation(np.concatenate(keep)), rng.permutation(np.concatenate(held))
