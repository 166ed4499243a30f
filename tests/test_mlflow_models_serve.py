"""MLflow's own scoring server on every pipeline's logged model: `mlflow models serve -m runs:/<id>/model
--env-manager local` (recommendation's by its registered alias, `models:/<name>@<alias>`) on loopback, queried as curl would (a JSON body with "inputs" and "params"), answers
what `deepsuite predict / generate / recommend / denoise --json` prints for the same inputs.

One smoke run per pipeline (tests/support/smoke_runs.py: the runs the pipelines' own test files read, so a
session running both trains each once); each server starts while the CLI answers the same inputs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from tests.support.cli import run_cli
from tests.support.data import (PNEUMONIA, SET12, needs_fashion_mnist, needs_pneumonia, needs_set12,
                                needs_tiny_shakespeare)
from tests.support.mlflow_models import mlflow_models_serve
from tests.support.serving import b64_file, b64_pixels, file_pixels, json_lines, same_answers, tree, without
from tests.support.smoke_runs import shared_smoke_run
from tests.support.store import only_run

pytestmark = pytest.mark.slow


@dataclass
class Case:
    """The same inputs twice: as `deepsuite <command>` arguments ("RUN" stands for the run id) and as the JSON
    body posted to /invocations; `check(predictions, cli_answers)` compares the two answers."""

    cli: list[str]
    body: dict
    check: Callable[[list, list], None]
    refused: dict = field(default_factory=dict)  # a body the server must answer with 400, its message fragment


def image_classification(tmp: Path) -> Case:
    from deepsuite.common.data import labeled_images

    image = labeled_images.load("fashion_mnist").test_x[11, ..., 0]
    Image.fromarray(image).save(tmp / "item.png")

    def check(served, expected):
        by_file, by_array = served  # the PNG's bytes and the same pixels as a JSON array
        [answer] = expected
        assert len(answer["top"]) == 2
        assert same_answers(by_file, {**answer, "input": "inputs[0]"}), (by_file, answer)
        assert same_answers(by_array, {**answer, "input": "inputs[1]"}), (by_array, answer)

    return Case(["predict", "RUN", str(tmp / "item.png"), "--top", "2", "--json"],
                {"inputs": [b64_file(tmp / "item.png"), image.tolist()], "params": {"top": 2}}, check,
                refused={"inputs": [str(tmp / "item.png")],
                         "message": "is a string: the server takes the file's data, not a path"})


def medical_imaging(tmp: Path) -> Case:
    with np.load(PNEUMONIA) as stored:  # a real test X-ray at 4x, as a user's PNG is larger than the model's input
        Image.fromarray(np.kron(stored["test_images"][3], np.ones((4, 4), np.uint8))).save(tmp / "xray.png")

    def check(served, expected):
        assert served[0]["input"] == "inputs[0]" and expected[0]["probabilities"]
        assert same_answers(without(served, "input", "gradcam", "summary"),
                            without(expected, "input", "gradcam", "summary")), (served, expected)
        assert np.array_equal(b64_pixels(served[0]["gradcam"]), file_pixels(expected[0]["gradcam"]))  # same overlay

    return Case(["predict", "RUN", str(tmp / "xray.png"), "--output", str(tmp / "cams"), "--json"],
                {"inputs": [b64_file(tmp / "xray.png")], "params": {"output": True}}, check)


def sentiment_analysis(tmp: Path) -> Case:
    texts = ["A gorgeous, witty delight.", "Dull, lifeless and far too long."]

    def check(served, expected):  # each answer names its text, as the CLI's does
        assert len(served) == 2 and same_answers(without(served), without(expected)), (served, expected)

    return Case(["predict", "RUN", *texts, "--json"], {"inputs": texts, "params": {"command": "predict"}}, check)


def text_generation(tmp: Path) -> Case:
    def check(served, expected):
        assert expected[0]["tokens"] == 40 and same_answers(without(served), without(expected)), (served, expected)

    return Case(["generate", "RUN", "--prompt", "JULIET:", "--max-tokens", "40", "--temperature", "0.9", "--top-k",
                 "30", "--seed", "11", "--json"],
                {"inputs": ["JULIET:"], "params": {"max_tokens": 40, "temperature": 0.9, "top_k": 30, "seed": 11}},
                check)


def recommendation(tmp: Path) -> Case:
    def check(served, expected):
        assert len(expected) == 6 and same_answers(without(served), without(expected)), (served, expected)

    return Case(["recommend", "RUN", "--user", "42", "--top", "6", "--json"],
                {"inputs": ["42"], "params": {"top": 6}}, check)


def image_denoising(tmp: Path) -> Case:
    noisy = SET12 / "02.png"

    def check(served, expected):
        assert served[0]["output"]["name"] == "02-denoised.png"
        assert same_answers(without(served, "input", "output", "summary"),
                            without(expected, "input", "output", "summary")), (served, expected)
        assert np.array_equal(b64_pixels(served[0]["output"]), file_pixels(expected[0]["output"]))  # the same pixels

    return Case(["denoise", "RUN", str(noisy), "-o", str(tmp / "out"), "--tile", "128", "--overlap", "16", "--json"],
                {"inputs": [b64_file(noisy)], "params": {"tile": 128, "overlap": 16}}, check)


def vader_cached() -> None:
    """The sentiment smoke run reads VADER's sentences from the data cache; skip (a failure under CI) without."""
    from deepsuite.common.errors import DataError
    from deepsuite.pipelines.sentiment_analysis.data import load_vader

    try:
        load_vader("movie_reviews")
    except DataError as exc:
        pytest.skip(f"vaderSentiment sdist unavailable: {exc}")


CASES = [
    pytest.param("image-classification", image_classification, marks=needs_fashion_mnist),
    pytest.param("medical-imaging", medical_imaging, marks=needs_pneumonia),
    pytest.param("sentiment-analysis", sentiment_analysis),
    pytest.param("text-generation", text_generation, marks=needs_tiny_shakespeare),
    pytest.param("recommendation", recommendation),
    pytest.param("image-denoising", image_denoising, marks=needs_set12),
]


def registered(folder: Path, run, name: str, alias: str) -> str:
    """`models:/<name>@<alias>` for the run's LoggedModel, registered through the suite's tracker (as `tune` does)."""
    from mlflow.tracking._tracking_service import utils as tracking_utils

    from deepsuite.common.tracking import Tracker

    [output] = run.outputs.model_outputs
    previous = tracking_utils._tracking_uri  # Tracker points this process's mlflow at the store: undone after
    try:
        Tracker(f"sqlite:///{folder}/mlruns/mlflow.db", folder / "mlruns").register_model(
            f"models:/{output.model_id}", name, alias)
    finally:
        tracking_utils._tracking_uri = previous
    return f"models:/{name}@{alias}"


@pytest.mark.parametrize("pipeline, case", CASES)
def test_mlflow_models_serve_answers_like_the_cli(pipeline, case, tmp_path_factory, tmp_path):
    if pipeline == "sentiment-analysis":
        vader_cached()
    folder, _ = shared_smoke_run(pipeline, tmp_path_factory)
    _, run = only_run(folder, pipeline)
    inputs = case(tmp_path)
    model_uri = f"runs:/{run.info.run_id}/model"
    if pipeline == "recommendation":  # one model served by its registered alias, as `tune` registers its best
        model_uri = registered(folder, run, pipeline, "champion")
    with mlflow_models_serve(model_uri, folder) as server:  # starts while the CLI runs
        cli = run_cli([run.info.run_id if arg == "RUN" else arg for arg in inputs.cli], cwd=folder)
        assert cli.code == 0, cli.err[-2000:]
        server.wait_ready()
        before = tree(folder)
        status, body = server.post(inputs.body)
        assert status == 200, (body, server.output())
        if inputs.refused:
            refused, error = server.post({"inputs": inputs.refused["inputs"]})
            assert refused == 400 and inputs.refused["message"] in error["message"], error
        assert tree(folder) == before  # nothing written where the server runs
    inputs.check(body["predictions"], json_lines(cli.out))
