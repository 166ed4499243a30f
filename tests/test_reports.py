"""The HTML report's reference figures: each pipeline declares the figures its README quotes once
(`Pipeline.references`), and a run's report shows them beside its own only when it ran on the same data."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from deepsuite.app import registry
from deepsuite.common import reports
from deepsuite.common.pipeline import DatasetInfo
from tests.support.cli import REPO

SIX = ["image-classification", "image-denoising", "medical-imaging", "recommendation", "sentiment-analysis",
       "text-generation"]


def readmes(pipeline) -> str:
    """The pipeline's own README (beside its pipeline.py) and the top README: where its figures are quoted."""
    folder = Path(sys.modules[type(pipeline).__module__].__file__).parent
    return (folder / "README.md").read_text(encoding="utf-8") + (REPO / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", SIX)
def test_every_declared_reference_figure_is_quoted_in_the_readme(name):
    pipeline = registry.get(name)
    assert pipeline.references, f"{name} declares no reference figure"
    text = readmes(pipeline)
    for reference in pipeline.references:
        assert reference.quoted in text, f"{name}: {reference.quoted!r} ({reference.metric}) is not in its README"
        assert reference.metric.startswith("test_") and reference.dataset and reference.measured


def test_the_report_shows_references_beside_the_run_only_for_the_data_they_were_measured_on():
    pipeline = registry.get("recommendation")  # two figures, each on its own split of the same ratings
    random_split = DatasetInfo("movielens-100k", "pypi:recbole", "0123", version="random")
    shown = pipeline.references_for(random_split)
    assert [r.metric for r in shown] == ["test_rmse"]
    page = reports.html_report("recommendation: smoke", {"test_rmse": 1.0123, "test_mae": 0.8}, "seed: 42\n", [], {},
                               references=shown)
    section = page.split("<h2>Reference figures</h2>", 1)[1].split("<h2>", 1)[0]
    assert "<td>test_rmse</td><td>1.0123</td><td>0.8950</td>" in section and "random 80/20" in section
    assert "0.0446" not in section  # measured on the temporal (leave-last-out) split, not this one
    assert pipeline.references_for(DatasetInfo("ratings", "csv:ratings.csv", "0123", version="random")) == []
    plain = reports.html_report("recommendation: smoke", {"test_rmse": 1.0}, "", [], {})
    assert "Reference figures" not in plain  # no section without figures for the run's data
    denoising = registry.get("image-denoising")  # Set12 figures: only when Set12 is the test folder
    skimage = "skimage (scikit-image sample photographs); test: {}"
    assert denoising.references_for(DatasetInfo("skimage", skimage.format("held-out photographs"), "0")) == []
    assert [r.quoted for r in denoising.references_for(
        DatasetInfo("skimage", skimage.format("folder:/data/set12"), "0"))] == ["29.92 dB"]
