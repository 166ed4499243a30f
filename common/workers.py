"""How many threads a loader uses by default, in one place so every loader agrees.

One per core, at most 8: image decoding and batch assembly release the GIL, and past 8 threads they rarely
get faster but hold more decoded images in memory at once. Kept free of Keras so the data loaders can use it.
"""
from __future__ import annotations

import os


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))
