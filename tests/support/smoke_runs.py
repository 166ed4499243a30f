"""One smoke run per pipeline, trained once per pytest session and shared by every test file that reads it.

Each pipeline's test file reads its run through a module fixture that calls `shared_smoke_run`, and the slow
`mlflow models serve` test (tests/test_mlflow_models_serve.py) serves the same runs, so a session that runs
both trains each pipeline once. A module-level cache, since fixtures of different test files are separate.
"""
from __future__ import annotations

from pathlib import Path

from tests.support.cli import Result, run_cli
from tests.support.data import PNEUMONIA, SET12, TINY_SHAKESPEARE

# `deepsuite run <pipeline> --preset smoke` plus these settings: what each pipeline's tests assert against
SMOKE_SETTINGS = {
    "image-classification": ["train.epochs=3", "model.dropout=0.2"],
    "medical-imaging": [f"data.source=medmnist:{PNEUMONIA}", "train.epochs=3", "model.tta_flip=true"],
    "sentiment-analysis": ["train.learning_rate=0.005"],
    "text-generation": [f"data.source=text:{TINY_SHAKESPEARE}"],
    "recommendation": [],
    "image-denoising": [f"data.test_folder={SET12}"],
}
_runs: dict[str, tuple[Path, Result]] = {}


def shared_smoke_run(pipeline: str, tmp_path_factory) -> tuple[Path, Result]:
    """(folder whose mlruns/ holds the one FINISHED smoke run of `pipeline`, the CLI's result)."""
    if pipeline not in _runs:
        folder = tmp_path_factory.mktemp(f"{pipeline}-smoke")
        args = ["run", pipeline, "--preset", "smoke"]
        for setting in SMOKE_SETTINGS[pipeline]:
            args += ["--set", setting]
        result = run_cli(args, cwd=folder)
        assert result.code == 0, result.err[-3000:]
        _runs[pipeline] = folder, result
    return _runs[pipeline]
