"""Image generation end to end through the real CLI: a DCGAN on a Fashion-MNIST subset, real sqlite MLflow store.

The smoke run's per-epoch losses and validation FID, its FID/KID test metrics and figures, `deepsuite generate`
on its export (a seeded, reproducible grid), the logged MLflow model answering `generate` with params, the
same run on JAX with TensorFlow hidden, a SIGKILLed run resumed to exactly the uninterrupted run's curves, the
VAE model kind, and `deepsuite tune` on the validation FID.

One 3-epoch smoke run (module fixture) is read by every test that only reads a run, and is also the
uninterrupted reference of the kill-and-resume test, so the file trains that recipe once.
"""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from tests.support.cli import REPO, like_a_terminal, run_cli, wait_while_running
from tests.support.data import needs_fashion_mnist
from tests.support.mlflow_models import load_pyfunc
from tests.support.store import only_run

pytestmark = needs_fashion_mnist
NAME = "image-generation"
SMOKE = ["run", NAME, "--preset", "smoke"]
EPOCHS = 3
RUN = [*SMOKE, "--set", f"train.epochs={EPOCHS}"]  # the shared run; the resume test's uninterrupted reference
CELL = 28 + 1  # a 28x28 image and the grid's 1-pixel gutter


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("image-generation-smoke")
    result = run_cli(RUN, cwd=folder)
    assert result.code == 0, result.err[-3000:]
    return folder, result


def epoch_samples(folder: Path, run_id: str) -> np.ndarray:
    """The `epoch_samples` variable (epochs x count x H x W x C) of the run's exported model.keras, read from its
    weights file (the only 5-D weight), without loading Keras."""
    [path] = list(folder.rglob(f"{run_id}/artifacts/export/model.keras"))
    found = []
    with zipfile.ZipFile(path) as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as weights:
        weights.visititems(lambda name, item: found.append(np.asarray(item))
                           if isinstance(item, h5py.Dataset) and item.ndim == 5 else None)
    [samples] = found
    return samples


def test_run_is_recorded_with_per_epoch_losses_fid_kid_and_figures(smoke_run):
    folder, result = smoke_run
    client, run = only_run(folder, NAME)
    assert run.info.status == "FINISHED" and run.info.run_name.startswith("dcgan-smoke-")
    assert "done: image-generation" in result.out
    assert run.data.tags["backend"] == "tensorflow"
    for key in ("loss", "d_loss", "g_loss", "d_real", "d_fake", "val_fid"):
        history = client.get_metric_history(run.info.run_id, key)
        assert [m.step for m in history] == list(range(1, EPOCHS + 1)), key  # one point per epoch
        assert all(np.isfinite(m.value) for m in history), key
    metrics = run.data.metrics
    for key in ("test_fid", "test_kid", "test_real_fid", "test_real_kid", "test_precision", "test_recall"):
        assert np.isfinite(metrics[key]), key
    assert metrics["test_samples"] == 256  # the smoke preset's N, capped by its 256 test images
    assert metrics["test_fid"] >= 0 and metrics["test_real_fid"] >= 0
    assert metrics["test_fid"] > metrics["test_real_fid"]  # three epochs on 384 images are far from the floor
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/samples.png", "plots/latent_interpolation.png", "plots/learning_curves.png",
            "plots/samples_by_epoch.png"} <= plots
    tables = {a.path for a in client.list_artifacts(run.info.run_id, "tables")}
    assert "tables/fid_kid.csv" in tables


def test_samples_by_epoch_hold_one_row_per_epoch(smoke_run):
    """The fixed latents' images after each epoch: one written row per epoch, each different from the one
    before (the generator trained in between), in the model's weights (so the per-epoch backup carries them)."""
    folder, _ = smoke_run
    _, run = only_run(folder, NAME)
    samples = epoch_samples(folder, run.info.run_id)
    assert samples.shape == (EPOCHS, 4, 28, 28, 1)  # rows = epochs, columns = the smoke preset's grid side
    assert np.all(np.abs(samples) <= 1.0) and np.all(samples.reshape(EPOCHS, -1).std(axis=1) > 0.01)
    assert all(np.abs(samples[e] - samples[e - 1]).max() > 1e-3 for e in range(1, EPOCHS))


def test_generate_writes_a_seeded_grid_of_the_asked_size(smoke_run):
    folder, _ = smoke_run
    _, run = only_run(folder, NAME)
    result = run_cli(["generate", run.info.run_id, "--n", "64", "--seed", "1", "--output", "a.png", "--json"],
                     cwd=folder)
    assert result.code == 0, result.err[-3000:]
    [answer] = [json.loads(line) for line in result.out.splitlines() if line.startswith("{")]
    assert answer["n"] == 64 and answer["image_shape"] == [28, 28, 1] and answer["output"].endswith("a.png")
    grid = np.asarray(Image.open(folder / "a.png"))
    assert grid.shape == (8 * CELL - 1, 8 * CELL - 1)  # 64 images as 8 x 8, grey
    again = run_cli(["generate", run.info.run_id, "--n", "64", "--seed", "1", "--output", "b.png"], cwd=folder)
    assert again.code == 0, again.err[-3000:]
    assert (np.asarray(Image.open(folder / "b.png")) == grid).all()  # the same seed and n: the very same grid
    result = run_cli(["generate", run.info.run_id, "--n", "6", "--columns", "3", "--seed", "1", "-o", "six.png"],
                     cwd=folder)
    assert result.code == 0, result.err[-3000:]
    six = np.asarray(Image.open(folder / "six.png"))
    assert six.shape == (2 * CELL - 1, 3 * CELL - 1)
    # the same seed draws the same first latents: the six images are the 64-grid's first six (up to one grey
    # level: a different batch size may round differently); the pyfunc test shows another seed changes them
    first_six = np.concatenate([grid[: 28, c * CELL: c * CELL + 28] for c in range(6)], axis=1).astype(int)
    cells = np.concatenate([six[r * CELL: r * CELL + 28, c * CELL: c * CELL + 28] for r in range(2)
                            for c in range(3)], axis=1).astype(int)
    assert np.abs(first_six - cells).max() <= 1 and first_six.std() > 1


def test_logged_mlflow_model_answers_generate_with_params(smoke_run, monkeypatch):
    folder, _ = smoke_run
    _, run = only_run(folder, NAME)
    model = load_pyfunc(folder, f"runs:/{run.info.run_id}/model", monkeypatch)
    params = {p.name: (p.dtype.name, p.default) for p in model.metadata.get_params_schema().params}
    assert params["command"] == ("string", "generate") and params["seed"][0] == "long"
    assert params["output"] == ("boolean", False)
    first, again = (model.predict([3], params={"seed": 7}) for _ in range(2))
    [answer] = first
    assert answer["n"] == 3 and np.asarray(answer["images"]).shape == (3, 28, 28)
    assert np.asarray(answer["images"]).dtype.kind in "iu"
    assert first[0]["images"] == again[0]["images"]  # seeded: the same images
    [other] = model.predict([3], params={"seed": 8})
    assert other["images"] != first[0]["images"]  # the seed decides the images
    [with_file] = model.predict([4], params={"seed": 7, "output": True})  # the grid comes back as base64
    assert with_file["output"]["name"] == "grid.png" and with_file["output"]["b64"]


def test_jax_backend_without_tensorflow(tmp_path):
    result = run_cli(SMOKE, cwd=tmp_path, backend="jax", hide_tensorflow=True)
    assert result.code == 0, result.err[-3000:]
    client, run = only_run(tmp_path, NAME)
    assert run.info.status == "FINISHED" and run.data.tags["backend"] == "jax"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "g_loss")] == [1, 2]
    assert np.isfinite(run.data.metrics["test_fid"]) and np.isfinite(run.data.metrics["test_kid"])
    samples = epoch_samples(tmp_path, run.info.run_id)  # written by the JAX validation step too
    assert samples.shape[0] == 2 and np.all(samples.reshape(2, -1).std(axis=1) > 0.01)
    generated = run_cli(["generate", run.info.run_id, "--n", "4", "--seed", "1", "-o", "grid.png"], cwd=tmp_path,
                        backend="jax", hide_tensorflow=True)
    assert generated.code == 0, generated.err[-3000:]
    assert np.asarray(Image.open(tmp_path / "grid.png")).shape == (2 * CELL - 1, 2 * CELL - 1)


def backup_epochs(folder: Path) -> int:
    for metadata in (folder / "mlruns" / "work").glob("*/backup/current/training_metadata.json"):
        try:
            return json.loads(metadata.read_text(encoding="utf-8"))["epoch"]
        except (OSError, ValueError, KeyError):
            return 0
    return 0


def curves(folder: Path):
    client, run = only_run(folder, NAME)
    per_epoch = {key: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
                 for key in ("loss", "d_loss", "g_loss", "val_fid")}
    tests = {k: v for k, v in run.data.metrics.items() if k.startswith("test_")}
    return per_epoch, tests, run.info.status, epoch_samples(folder, run.info.run_id)


def test_killed_and_resumed_gan_equals_the_uninterrupted_run(smoke_run, tmp_path):
    """Both networks' weights, both optimizers' Adam moments and step counts, the EMA generator, the latent
    sampler's state, the per-epoch sample rows and the data order survive a SIGKILL: the resumed run's curves,
    test metrics and sample rows equal the uninterrupted run's (the shared smoke run, same settings)."""
    whole, _ = smoke_run
    expected, expected_tests, _, expected_samples = curves(whole)
    assert len(expected["g_loss"]) == EPOCHS

    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "deepsuite.app.cli", *RUN], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=like_a_terminal)
    wait_while_running(lambda: backup_epochs(tmp_path) >= 1, proc, 300, "a backup of 1 epoch",
                       lambda: proc.communicate()[1][-2000:])
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    killed_after = backup_epochs(tmp_path)
    assert 1 <= killed_after < EPOCHS, killed_after
    _, run = only_run(tmp_path, NAME)
    assert run.info.status == "RUNNING"

    resumed = run_cli(["run", NAME, "--resume", run.info.run_id], cwd=tmp_path)
    assert resumed.code == 0, resumed.err[-3000:]
    got, got_tests, status, got_samples = curves(tmp_path)
    assert status == "FINISHED"
    for key in expected:
        assert got[key] == expected[key], (key, killed_after, got[key], expected[key])
    assert got_tests == expected_tests
    np.testing.assert_array_equal(got_samples, expected_samples)


def test_vae_model_kind_runs_and_generates(tmp_path):
    result = run_cli([*SMOKE, "--set", "model.kind=vae", "--set", "train.learning_rate=0.002"], cwd=tmp_path)
    assert result.code == 0, result.err[-3000:]
    client, run = only_run(tmp_path, NAME)
    assert run.info.status == "FINISHED" and run.info.run_name.startswith("vae-smoke-")
    for key in ("loss", "reconstruction", "kl", "val_fid"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [1, 2], key
    assert np.isfinite(run.data.metrics["test_fid"]) and np.isfinite(run.data.metrics["test_kid"])
    assert "plots/samples_by_epoch.png" in {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    generated = run_cli(["generate", run.info.run_id, "--n", "9", "--seed", "1", "-o", "grid.png"], cwd=tmp_path)
    assert generated.code == 0, generated.err[-3000:]
    assert np.asarray(Image.open(tmp_path / "grid.png")).shape == (3 * CELL - 1, 3 * CELL - 1)


def test_tune_searches_the_space_on_validation_fid(tmp_path):
    result = run_cli(["tune", NAME, "--preset", "smoke", "--tuner", "random", "--max-trials", "2",
                      "--max-epochs", "1"], cwd=tmp_path)
    assert result.code == 0, result.err[-3000:]
    assert "best: trial id" in result.out and "val_fid=" in result.out and "test_fid=" in result.out
    assert "try: deepsuite generate models:/image-generation@best" in result.out  # the pipeline's own verb
