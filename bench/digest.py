"""Which data a bench figure was measured on, as 12 hex digits; kept apart from harness.py so a test can
import it without the harness's side effects (it routes stderr through TensorFlow's log filter)."""
from __future__ import annotations

import hashlib

import numpy as np


def data_digest(value) -> str:
    """First 12 hex digits of a sha256 over arrays, strings, lists, dicts and PyDatasets (batch by batch).
    dtype, shape and length go in before every part, so differently cut data cannot hash alike."""
    import keras

    h = hashlib.sha256()

    def feed(v) -> None:
        if v is None:
            h.update(b"N")
        elif isinstance(v, (str, bytes)):
            data = v.encode() if isinstance(v, str) else v
            h.update(b"S%d:" % len(data) + data)
        elif isinstance(v, dict):
            h.update(b"D%d:" % len(v))
            for key in sorted(v, key=str):
                feed(str(key))
                feed(v[key])
        elif isinstance(v, (list, tuple, keras.utils.PyDataset)):
            h.update(b"L%d:" % len(v))
            for i in range(len(v)):
                feed(v[i])
        else:
            array = np.asarray(v)
            if array.dtype == object:  # strings (sentiment's raw text) and other Python objects
                feed(repr(v) if array.ndim == 0 else array.tolist())
            else:
                h.update(f"A{array.dtype.str}{array.shape}:".encode())
                h.update(np.ascontiguousarray(array).tobytes())

    feed(value)
    return h.hexdigest()[:12]
