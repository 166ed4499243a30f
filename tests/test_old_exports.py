"""Models exported before the `deepsuite` namespace and the typed manifest still load and answer.

tests/fixtures/exports-v0 holds one smoke-preset export per pipeline written by the code as it was before
(commit 9934fb3; no `format_version` in deepsuite.json). Each is loaded through today's path (manifest,
registry, typed metadata, custom layers) and asked its command on real inputs.
"""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from deepsuite.app import invoke
from deepsuite.common import export
from tests.support.cli import REPO

FIXTURES = REPO / "tests" / "fixtures" / "exports-v0"


def image(path, size, channels=1):
    pixels = np.random.default_rng(0).integers(0, 256, (size, size, channels) if channels > 1 else (size, size))
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return str(path)


def requests(tmp_path):
    return {
        "image-classification": ("predict", {"inputs": [image(tmp_path / "shirt.png", 28)], "top": 2}, "label"),
        "medical-imaging": ("predict", {"inputs": [image(tmp_path / "xray.png", 28)], "output": tmp_path / "cams"},
                            "probability"),
        "image-denoising": ("denoise", {"inputs": [image(tmp_path / "noisy.png", 40)],
                                        "output": tmp_path / "clean"}, "output"),
        "sentiment-analysis": ("predict", {"inputs": ["a wonderful, moving film"]}, "label"),
        "text-generation": ("generate", {"prompt": "ROMEO:", "max_tokens": 12, "seed": 1}, "text"),
        "recommendation": ("recommend", {"user": "1", "top": 3}, "item_id"),
    }


@pytest.mark.parametrize("pipeline", sorted(p.name for p in FIXTURES.iterdir() if p.is_dir()))
def test_an_export_from_before_the_typed_manifest_still_answers(pipeline, tmp_path):
    folder = FIXTURES / pipeline
    manifest = export.read_manifest(folder)
    assert manifest.format_version == 0 and manifest.pipeline == pipeline
    verb, options, key = requests(tmp_path)[pipeline]
    answers = invoke.invoke(verb, str(folder), options)
    assert answers and all(key in answer for answer in answers), answers
    if "output" in options:  # the Grad-CAM overlay or the denoised image was drawn where asked
        assert list(options["output"].glob("*.png")), answers
    if pipeline == "image-classification":
        assert answers[0]["label"] in manifest.metadata["class_names"] and len(answers[0]["top"]) == 2
    if pipeline == "text-generation":
        assert answers[0]["tokens"] == 12
