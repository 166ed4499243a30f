"""The benches' smoke mode end to end, and the digest that says which data a bench figure was measured on.

Each bench script runs its pipeline's smoke preset as a real subprocess (one short training each, 20-90 s
on two cores, so these are `slow`) and must print the seed, the split sizes and a digest of the test split
before its figures, at least one target verdict, and exit 0: smoke reports the targets but never gates.
"""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from tests.support.cli import REPO

BENCHES = ["image_classification", "image_denoising", "medical_imaging", "recommendation",
           "sentiment_analysis", "text_generation", "tuning"]
TAKES_STORE = set(BENCHES) - {"sentiment_analysis"}  # that one runs the CLI in a temporary folder of its own
DATA_LINE = re.compile(r"^seed \d+ \| split sizes train \d+, validation \d+, test \d+ \| test digest [0-9a-f]{12}$",
                       re.MULTILINE)
VERDICT = re.compile(r"target.*\b(NOT met|met)\b")


@pytest.mark.slow
@pytest.mark.parametrize("name", BENCHES)
def test_bench_smoke_prints_its_data_and_verdicts(name, tmp_path):
    args = [sys.executable, str(REPO / "bench" / f"{name}.py"), "--preset", "smoke"]
    if name in TAKES_STORE:
        args += ["--store", str(tmp_path / "mlruns")]
    proc = subprocess.run(args, cwd=REPO, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, capture_output=True,
                          text=True, timeout=600, check=False)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    data, verdict = DATA_LINE.search(out), VERDICT.search(out)
    assert data, out
    assert verdict, out
    assert data.start() < verdict.start(), "the data line must come before the figures it describes"
    assert "smoke preset: targets reported, not gated" in out


def test_data_digest_follows_the_contents():
    harness = _load_digest()
    x = np.arange(24, dtype=np.float32).reshape(6, 4)
    ids = {"user": np.arange(6), "item": np.array(["a", "b", "c", "d", "e", "f"], dtype=object)}
    texts = ["a good film", "a dull one"]
    digest = harness.data_digest((x, ids, texts))
    assert re.fullmatch(r"[0-9a-f]{12}", digest)
    assert harness.data_digest((x.copy(), {k: v.copy() for k, v in ids.items()}, list(texts))) == digest

    changed = x.copy()
    changed[5, 3] += 1
    assert harness.data_digest((changed, ids, texts)) != digest
    assert harness.data_digest((x, ids, ["a good film", "a dull one!"])) != digest
    assert harness.data_digest((x, {**ids, "item": ids["item"][::-1]}, texts)) != digest
    assert harness.data_digest((x[:5], ids, texts)) != digest


def _load_digest():
    """bench/ is not a package: load bench/digest.py from its file."""
    spec = importlib.util.spec_from_file_location("bench_digest", REPO / "bench" / "digest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
