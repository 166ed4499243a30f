"""The real data the tests read, and one skip mark per source for tests that cannot run without it.

Only tests that read a source carry its mark: config and error-path tests that fail before any data is
loaded run everywhere. Under CI=true a skip fails (tests/conftest.py), and CI installs every source.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from deepsuite.common.data.labeled_images import DEBIAN_FASHION_MNIST
from tests.support.cli import SHARED_DATA

PNEUMONIA = SHARED_DATA / "pneumoniamnist.npz"
SET12 = SHARED_DATA / "set12"
TINY_SHAKESPEARE = SHARED_DATA / "tinyshakespeare.txt"
# Keras's own download of Fashion-MNIST is the loader's fallback when Debian's package is absent.
KERAS_FASHION_MNIST = Path.home() / ".keras" / "datasets" / "fashion-mnist"

needs_fashion_mnist = pytest.mark.skipif(
    not (DEBIAN_FASHION_MNIST.exists() or KERAS_FASHION_MNIST.exists()),
    reason="Fashion-MNIST is neither installed (Debian's dataset-fashion-mnist, which setup.sh installs) "
           "nor downloaded by Keras (~/.keras/datasets/fashion-mnist)")
needs_pneumonia = pytest.mark.skipif(not PNEUMONIA.exists(), reason=f"{PNEUMONIA} is missing")
needs_set12 = pytest.mark.skipif(not SET12.is_dir(), reason=f"{SET12} is missing")
needs_tiny_shakespeare = pytest.mark.skipif(not TINY_SHAKESPEARE.exists(), reason=f"{TINY_SHAKESPEARE} is missing")
