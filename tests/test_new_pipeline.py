"""A seventh domain plugs in from outside: its own distribution, an entry point, a verb and a flag no
built-in pipeline has, and nothing under common/ or app/ changes.

The throwaway pipeline `toy-scaler` (a linear regression on generated data whose `score` command scales
the model's output by `--scale`) is written into a temporary folder, installed with pip into a temporary
target folder, and then driven through the real CLI: `list`, `run --preset smoke`, `score --help`,
`score MODEL ... --scale 3 --json` and `serve` answering the same request with the same numbers.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.cli import REPO, run_cli
from tests.support.serving import json_lines, same_answers, scoring_server

CONFIG = '''
from pydantic import Field

from deepsuite.common.config import RunConfig, Section, TrainConfig


class DataConfig(Section):
    samples: int = Field(600, ge=20)
    cache_dir: str | None = None


class ToyScalerConfig(RunConfig):
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig(epochs=3, batch_size=32, learning_rate=0.05, optimizer="adam", verbose=0)


PRESETS = {"default": {}, "smoke": {"data": {"samples": 200}, "train": {"epochs": 2}}}
'''

CONTRACT = '''
from deepsuite.common.commands import Options, inputs_field
from deepsuite.common.export import ExportMetadata


class ToyScalerMetadata(ExportMetadata):
    features: int


class ScoreOptions(Options):
    inputs: list[str] = inputs_field("comma-separated feature vectors, e.g. 0.5,1.0", files=False)
    scale: float = 1.0
    label: str = "score"


class PredictOptions(Options):
    """The verb image classification also declares, with a flag of its own instead of --top."""

    inputs: list[str] = inputs_field("comma-separated feature vectors", files=False)
    threshold: float = 0.0
'''

PIPELINE = '''
import numpy as np

from deepsuite.common.commands import Command
from deepsuite.common.pipeline import DatasetInfo, Evaluation, Pipeline, Split, Splits, to_numpy
from toy_suite.config import PRESETS, ToyScalerConfig
from toy_suite.contract import PredictOptions, ScoreOptions, ToyScalerMetadata


class ToyScalerPipeline(Pipeline):
    description = "a throwaway linear regression that scores feature vectors"
    config_cls = ToyScalerConfig
    metadata_cls = ToyScalerMetadata
    presets = PRESETS
    default_dataset = "generated"
    commands = (Command("score", "score feature vectors, scaled", ScoreOptions, "score",
                        example={"inputs": ["0.5,1.0"], "scale": 2.0}),
                Command("predict", "is the value above --threshold", PredictOptions, "above"))

    def load_data(self, config):
        rng = np.random.default_rng(7)
        x = rng.normal(size=(config.data.samples, 2)).astype("float32")
        y = (x @ np.array([2.0, -1.0], "float32") + 0.5).astype("float32")
        n = len(x) // 5
        return Splits(Split(x[2 * n:], y[2 * n:]), Split(x[:n], y[:n]), Split(x[n:2 * n], y[n:2 * n]),
                      DatasetInfo("generated", "toy_suite", f"{len(x)}"), metadata=ToyScalerMetadata(features=2))

    def build_model(self, config, splits):
        import keras

        inputs = keras.Input((splits.metadata.features,))
        model = keras.Model(inputs, keras.layers.Dense(1)(inputs)[:, 0])
        model.compile(keras.optimizers.Adam(config.train.learning_rate), "mse")
        return model

    def evaluate(self, model, splits, config):
        predicted = to_numpy(model.predict(splits.test.x, verbose=0))
        return Evaluation({"mse": float(np.mean((predicted - splits.test.y) ** 2))})

    def score(self, model, export, options):
        rows = np.array([[float(v) for v in text.split(",")] for text in options.inputs], "float32")
        if rows.shape[1] != export.metadata.features:
            raise ValueError(f"expected {export.metadata.features} features")
        values = to_numpy(model.predict(rows, verbose=0)) * options.scale
        return [{"input": text, options.label: round(float(v), 5)} for text, v in zip(options.inputs, values)]

    def above(self, model, export, options):
        rows = np.array([[float(v) for v in text.split(",")] for text in options.inputs], "float32")
        values = to_numpy(model.predict(rows, verbose=0))
        return [{"input": text, "above": bool(v > options.threshold)} for text, v in zip(options.inputs, values)]
'''

PYPROJECT = '''
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "toy-suite"
version = "0.0.1"

[project.entry-points."deepsuite.pipelines"]
toy-scaler = "toy_suite.pipeline:ToyScalerPipeline"

[tool.setuptools]
packages = ["toy_suite"]
'''


def tree_digest(*folders: str) -> str:
    digest = hashlib.sha256()
    for folder in folders:
        for path in sorted((REPO / folder).rglob("*.py")):
            digest.update(str(path.relative_to(REPO)).encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def toy_site(tmp_path_factory) -> Path:
    """The toy distribution, pip-installed into a folder of its own (put on PYTHONPATH below)."""
    source = tmp_path_factory.mktemp("toy-src")
    (source / "toy_suite").mkdir()
    for name, text in {"__init__.py": '"""A throwaway pipeline."""\n', "config.py": CONFIG,
                       "contract.py": CONTRACT, "pipeline.py": PIPELINE}.items():
        (source / "toy_suite" / name).write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    (source / "pyproject.toml").write_text(PYPROJECT.lstrip(), encoding="utf-8")
    site = tmp_path_factory.mktemp("toy-site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(source)], check=True, capture_output=True, text=True, timeout=300)
    assert (site / "toy_suite" / "pipeline.py").exists()
    assert any(site.glob("toy_suite-0.0.1.dist-info/entry_points.txt"))
    return site


def test_a_pipeline_from_another_distribution_runs_end_to_end(toy_site, tmp_path):
    before = tree_digest("common", "app")
    env = {"PYTHONPATH": os.pathsep.join([str(toy_site), str(REPO)])}

    listed = run_cli(["list"], cwd=tmp_path, env=env)
    assert listed.code == 0, listed.err
    assert "toy-scaler\n  a throwaway linear regression" in listed.out and "commands: score, predict" in listed.out

    helped = run_cli(["score", "--help"], cwd=tmp_path, env=env)
    assert helped.code == 0 and "toy-scaler" in helped.out and "--scale" in helped.out
    shared = run_cli(["predict", "--help"], cwd=tmp_path, env=env)  # one verb, two pipelines' options
    assert shared.code == 0 and "toy-scaler: is the value above" in shared.out and "--threshold" in shared.out
    assert "image-classification: classify image files" in shared.out and "--top" in shared.out

    ran = run_cli(["run", "toy-scaler", "--preset", "smoke", "--store", "mlruns"], cwd=tmp_path, env=env)
    assert ran.code == 0, ran.err
    assert "done: toy-scaler run" in ran.out and "test_mse=" in ran.out
    export = next((tmp_path / "mlruns" / "artifacts").rglob("export/model.keras")).parent
    manifest = json.loads((export / "deepsuite.json").read_text())
    assert manifest["format_version"] == 1 and manifest["pipeline"] == "toy-scaler"
    assert manifest["metadata"] == {"features": 2}

    inputs = ["0.5,1.0", "1.5,-2.0"]
    scored = run_cli(["score", str(export), *inputs, "--scale", "3", "--label", "value", "--json"], cwd=tmp_path,
                     env=env)
    assert scored.code == 0, scored.err
    answers = json_lines(scored.out)
    assert [a["input"] for a in answers] == inputs and all(set(a) == {"input", "value"} for a in answers)
    unscaled = json_lines(run_cli(["score", str(export), *inputs, "--json"], cwd=tmp_path, env=env).out)
    assert [round(3 * a["score"], 3) for a in unscaled] == [round(a["value"], 3) for a in answers]

    wrong = run_cli(["score", str(export), *inputs, "--top", "2"], cwd=tmp_path, env=env)
    assert wrong.code == 2 and "unrecognized arguments: --top 2" in wrong.err  # another pipeline's flag
    above = run_cli(["predict", str(export), *inputs, "--threshold", "-100", "--json"], cwd=tmp_path, env=env)
    assert above.code == 0, above.err
    assert [a["above"] for a in json_lines(above.out)] == [True, True]
    wrong = run_cli(["predict", str(export), *inputs, "--top", "2"], cwd=tmp_path, env=env)
    assert wrong.code == 2 and "unrecognized arguments: --top 2" in wrong.err  # the verb's options are toy's

    with scoring_server(str(export), cwd=tmp_path, env=env) as server:
        served = server.post({"command": "score", "inputs": inputs, "scale": 3, "label": "value"})
        assert same_answers(served, answers, tolerance=1e-3)
        error = server.post_error({"inputs": inputs})  # two commands: the request must say which
        assert error["status"] == 400 and "say which command: \"command\" is one of score, predict" in error["error"]
        assert same_answers(server.post({"command": "score", "inputs": inputs, "options": {"scale": 3,
                                                                                          "label": "value"}}),
                            answers, tolerance=1e-3)
        error = server.post_error({"command": "score", "inputs": inputs, "top": 2})
        assert error["status"] == 400 and "unknown option 'top' for score; allowed: 'inputs', 'scale'" in error["error"]
        error = server.post_error({"command": "generate", "prompt": "hi"})
        assert error["status"] == 400 and "does not support `deepsuite generate` (it offers: score, predict)" in error["error"]
    assert tree_digest("common", "app") == before
