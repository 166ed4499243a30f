"""TensorFlow Datasets by name (`tfds:<name>`), for users with the internet or a prepared data_dir.

TensorFlow is imported here only, when a TFDS source is actually used. `prepared_builder` opens (and with
`download` prepares) a dataset; `load_tfds_supervised` / `read_supervised` read splits into arrays; `supervised_layout`
says what a split holds (examples, image shape, class names) from the builder's metadata alone, without
reading a record, so a caller can decide to stream (tfds_images.py) before anything is decoded.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import numpy as np

from deepsuite.common.errors import DataError


def prepared_builder(name: str, data_dir: str | None = None, download: bool = True):
    """The TFDS builder of `name`, prepared in `data_dir` (downloaded first when `download` is on)."""
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise DataError("tensorflow-datasets is not installed (pip install 'deepsuite[tensorflow]')") from None
    _tensorflow_off_accelerators()
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as exc:  # tfds raises its own DatasetNotFoundError and friends
        raise DataError(f"TFDS has no dataset {name!r} ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    if not download and not os.path.isdir(builder.data_dir):
        raise DataError(f"TFDS dataset {name!r} is not prepared in {builder.data_dir} and data.download is off; "
                        "turn download on (needs the internet) or point tfds_data_dir at a prepared copy")
    if download:
        with _as_data_error(name):
            builder.download_and_prepare()
    return builder


def _tensorflow_off_accelerators() -> None:
    """TFDS reads through tf.data on the CPU. Where Keras trains on another backend (JAX on a GPU), TensorFlow
    would otherwise claim most of each GPU's memory when it starts; hide the GPUs from it first (too late once
    TensorFlow has started, which only happens where it is the backend or already used)."""
    keras = sys.modules.get("keras")
    backend = keras.backend.backend() if keras is not None else os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend == "tensorflow":
        return
    import tensorflow as tf

    try:
        tf.config.set_visible_devices([], "GPU")
    except (RuntimeError, ValueError):
        pass


def load_tfds_supervised(name: str, data_dir: str | None = None, download: bool = True) -> dict[str, np.ndarray]:
    """{"<split>_x": ..., "<split>_y": ...} for every split TFDS provides."""
    builder = prepared_builder(name, data_dir, download)
    return read_supervised(builder, list(builder.info.splits))


def read_supervised(builder, splits) -> dict[str, np.ndarray]:
    """{"<split>_x": ..., "<split>_y": ...} of the prepared builder's `splits`, each read whole into memory."""
    import tensorflow_datasets as tfds

    with _as_data_error(builder.info.name):
        arrays = {}
        for split in splits:
            ds = builder.as_dataset(split=split, as_supervised=True, batch_size=-1)
            x, y = tfds.as_numpy(ds)
            arrays[f"{split}_x"], arrays[f"{split}_y"] = np.asarray(x), np.asarray(y)
        return arrays


@dataclass
class SupervisedLayout:
    """What a prepared TFDS dataset's (input, label) pairs are, from its metadata."""

    examples: dict[str, int]               # split -> number of examples
    input_shape: tuple                     # e.g. (28, 28, 1), or (None, None, 3) when images vary in size
    class_names: list[str] | None          # the label feature's names, if it has them


def supervised_layout(builder) -> SupervisedLayout:
    info = builder.info
    keys = info.supervised_keys
    if not keys or len(keys) < 2 or not all(isinstance(k, str) for k in keys[:2]):
        raise DataError(f"TFDS dataset {info.name!r} has no (input, label) supervised keys "
                        f"(found {keys!r}); image classification needs an image and a label feature")
    image, label = info.features[keys[0]], info.features[keys[1]]
    shape = tuple(getattr(image, "shape", ()) or ())
    names = getattr(label, "names", None)
    return SupervisedLayout({s: int(info.splits[s].num_examples) for s in info.splits}, shape,
                            [str(n) for n in names] if names else None)


class _as_data_error:
    """Anything TFDS or TensorFlow raises while preparing or reading becomes one DataError saying what to do."""

    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None or isinstance(exc, DataError) or not isinstance(exc, Exception):
            return False
        first = (str(exc).splitlines() or [""])[0][:200]
        raise DataError(
            f"TFDS dataset {self.name!r} could not be prepared ({type(exc).__name__}: {first}); "
            "downloading needs the internet, or pass a data_dir where it is already prepared"
        ) from None
