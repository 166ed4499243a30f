"""TensorFlow Datasets by name (`tfds:<name>`), for users with the internet or a prepared data_dir.

TensorFlow is imported here only, when a TFDS source is actually used.
"""
from __future__ import annotations

import os

import numpy as np

from deepsuite.common.errors import DataError


def load_tfds_supervised(name: str, data_dir: str | None = None, download: bool = True) -> dict[str, np.ndarray]:
    """{"<split>_x": ..., "<split>_y": ...} for every split TFDS provides."""
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise DataError("tensorflow-datasets is not installed (pip install 'deepsuite[tensorflow]')") from None
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as exc:  # tfds raises its own DatasetNotFoundError and friends
        raise DataError(f"TFDS has no dataset {name!r} ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    if not download and not os.path.isdir(builder.data_dir):
        raise DataError(f"TFDS dataset {name!r} is not prepared in {builder.data_dir} and data.download is off; "
                        "turn download on (needs the internet) or point tfds_data_dir at a prepared copy")
    try:
        if download:
            builder.download_and_prepare()
        arrays = {}
        for split in builder.info.splits:
            ds = builder.as_dataset(split=split, as_supervised=True, batch_size=-1)
            x, y = tfds.as_numpy(ds)
            arrays[f"{split}_x"], arrays[f"{split}_y"] = np.asarray(x), np.asarray(y)
        return arrays
    except DataError:
        raise
    except Exception as exc:
        raise DataError(
            f"TFDS dataset {name!r} could not be prepared ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
            "downloading needs the internet, or pass a data_dir where it is already prepared"
        ) from None
