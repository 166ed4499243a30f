"""Image denoising end to end through the real CLI: skimage photographs, Set12 test images, real MLflow store."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.support.data import needs_set12
from tests.support.cli import SHARED_DATA, run_cli
from tests.support.mlflow_models import answer_as_served, assert_pyfunc_confined, load_pyfunc
from tests.support.serving import (assert_confined, b64_file, b64_pixels, file_pixels, json_lines, same_answers,
                                   scoring_server, without)
from tests.support.store import only_run
from tests.support.smoke_runs import shared_smoke_run

SET12 = SHARED_DATA / "set12"
SMOKE = ["run", "image-denoising", "--preset", "smoke", "--set", f"data.test_folder={SET12}"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    return shared_smoke_run("image-denoising", tmp_path_factory)  # SMOKE: Set12 as the test folder


@needs_set12
def test_run_is_recorded_with_psnr_ssim_baseline_and_figures(smoke_run):
    folder, result = smoke_run
    client, run = only_run(folder, "image-denoising")
    assert run.info.status == "FINISHED" and run.info.run_name.startswith("unet-smoke-")
    metrics = run.data.metrics
    assert metrics["test_noisy_psnr"] == pytest.approx(20.17, abs=0.1)    # sigma=25, unclipped noise
    for key in ("test_psnr", "test_ssim", "test_noisy_ssim", "test_nl_means_psnr", "test_nl_means_ssim",
                "test_psnr_gain", "test_psnr_over_nl_means"):
        assert key in metrics, key
    assert metrics["test_nl_means_psnr"] > metrics["test_noisy_psnr"] + 5  # the classical baseline works
    assert 0 < metrics["test_ssim"] <= 1 and len(client.get_metric_history(run.info.run_id, "val_loss")) == 2
    assert run.data.params["noise.sigma"] == "25.0" and run.data.params["model.kind"] == "unet"
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/learning_curves.png", "plots/denoising_examples.png"} <= plots
    table = client.download_artifacts(run.info.run_id, "tables/per_image.csv", str(folder))
    lines = open(table).read().strip().splitlines()
    assert lines[0].startswith("image,height,width,noisy_psnr") and [l.split(",")[0] for l in lines[1:]] == \
        ['"01"', '"02"', '"03"', "mean"]
    assert "mean PSNR" in open(client.download_artifacts(run.info.run_id, "report.html", str(folder))).read()


@needs_set12
def test_denoise_cli_any_size_grey_16_bit_and_colour_with_alpha(smoke_run, tmp_path):
    folder, _ = smoke_run
    _, run = only_run(folder, "image-denoising")
    grey16 = tmp_path / "grey16.png"
    Image.fromarray((np.random.default_rng(0).random((70, 45)) * 65535).astype(np.uint16)).save(grey16)
    rgba = tmp_path / "colour.png"
    Image.fromarray((np.random.default_rng(1).random((37, 81, 4)) * 255).astype(np.uint8), mode="RGBA").save(rgba)
    out = tmp_path / "out"
    result = run_cli(["denoise", run.info.run_id, str(grey16), str(rgba), "-o", str(out), "--tile", "32",
                      "--overlap", "8", "--json"], cwd=folder)
    assert result.code == 0, result.err[-2000:]
    answers = [json.loads(line) for line in result.out.strip().splitlines()]
    assert [a["tiles"] > 1 for a in answers] == [True, True]
    with Image.open(out / "grey16-denoised.png") as image:
        assert image.size == (45, 70) and image.mode.startswith("I")       # still 16-bit
    with Image.open(out / "colour-denoised.png") as image:
        assert image.size == (81, 37) and image.mode == "RGBA"


@needs_set12
def test_served_denoising_equals_the_cli_on_the_same_image(smoke_run, tmp_path):
    folder, _ = smoke_run
    _, run = only_run(folder, "image-denoising")
    noisy = str(SET12 / "02.png")  # 256x256 grey, denoised in overlapping 128 px tiles
    with scoring_server(run.info.run_id, folder) as server:  # starts while the CLI runs
        cli = run_cli(["denoise", run.info.run_id, noisy, "-o", str(tmp_path / "out"), "--tile", "128", "--overlap",
                       "16", "--json"], cwd=folder)
        assert cli.code == 0, cli.err[-2000:]
        [expected] = json_lines(cli.out)
        [served] = server.post({"command": "denoise", "inputs": [b64_file(noisy)], "tile": 128, "overlap": 16})
        assert_confined(server, folder, tmp_path, lambda path: [{"inputs": [path]}, {"inputs": [path], "output": path}], refused=True)
    assert expected["tiles"] > 1 and served["input"] == "inputs[0]"
    assert same_answers(without([served], "input", "output", "summary"), without([expected], "input", "output", "summary"))
    assert served["output"]["name"] == "02-denoised.png" == (tmp_path / "out" / "02-denoised.png").name
    assert np.array_equal(b64_pixels(served["output"]), file_pixels(expected["output"]))


@needs_set12
def test_logged_mlflow_model_denoises_image_data_like_the_cli(smoke_run, tmp_path, monkeypatch):
    """The logged MLflow model takes a noisy image's bytes, tiles as params, and sends the denoised PNG back
    base64-encoded: the pixels `deepsuite denoise` writes; paths are refused and nothing is written here."""
    from mlflow.exceptions import MlflowException

    folder, _ = smoke_run
    _, run = only_run(folder, "image-denoising")
    noisy = SET12 / "02.png"
    cli = run_cli(["denoise", run.info.run_id, str(noisy), "-o", str(tmp_path / "out"), "--tile", "128", "--overlap",
                   "16", "--json"], cwd=folder)
    assert cli.code == 0, cli.err[-2000:]
    [expected] = json_lines(cli.out)
    model = load_pyfunc(folder, f"runs:/{run.info.run_id}/model", monkeypatch)
    params = {p.name: (p.dtype.name, p.default) for p in model.metadata.get_params_schema().params}
    assert params == {"command": ("string", "denoise"), "output": ("boolean", False), "tile": ("long", 256),
                      "overlap": ("long", 32)}
    [served] = answer_as_served(model, {"inputs": [b64_file(noisy)], "params": {"tile": 128, "overlap": 16}})
    assert same_answers(without([served], "input", "output", "summary"), without([expected], "input", "output", "summary"))
    assert served["input"] == "inputs[0]" and served["output"]["name"] == "02-denoised.png"
    assert np.array_equal(b64_pixels(served["output"]), file_pixels(expected["output"]))
    with pytest.raises(MlflowException, match="'tile' 100000: Input should be less than or equal to 1024"):
        model.predict([b64_file(noisy)], params={"tile": 100_000})
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    assert_pyfunc_confined(model, cwd, tmp_path, lambda path: [{"inputs": [path]}, {"inputs": [b64_file(noisy)],
                                                                                    "params": {"output": path}}],
                           monkeypatch, refused=True)


@needs_set12
def test_denoise_bad_inputs_are_one_clear_line(smoke_run, tmp_path):
    folder, _ = smoke_run
    _, run = only_run(folder, "image-denoising")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    result = run_cli(["denoise", run.info.run_id, str(SET12 / "01.png"), str(empty)], cwd=folder)
    assert result.code == 2 and "Traceback" not in result.err
    assert result.err.strip().splitlines() == [f"error: {empty}: empty file (0 bytes), not an image"]
    assert not (SET12 / "01-denoised.png").exists()                      # nothing written before the check
    huge = run_cli(["denoise", run.info.run_id, str(SET12 / "01.png"), "--tile", "100000"], cwd=folder)
    assert huge.code == 2 and "--tile 100000: Input should be less than or equal to 1024" in huge.err


def test_sigma_must_be_positive(tmp_path):
    result = run_cli(["run", "image-denoising", "--set", "noise.sigma=0"], cwd=tmp_path)
    assert result.code == 2 and "noise.sigma" in result.err and "greater than 0" in result.err


@needs_set12
def test_training_images_smaller_than_a_patch_fail_the_run_clearly(tmp_path):
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    for i in range(3):
        Image.fromarray(np.full((20, 24), 40 * i, np.uint8)).save(tiny / f"{i}.png")
    result = run_cli([*SMOKE, "--set", f"data.source=folder:{tiny}"], cwd=tmp_path)
    assert result.code == 2 and "smaller than data.patch_size=32" in result.err
    _, run = only_run(tmp_path, "image-denoising")
    assert run.info.status == "FAILED"


@needs_set12
def test_dncnn_on_jax_without_tensorflow(tmp_path):
    # the smoke preset's 2 x 128 patches barely move a DnCNN (+0.16 dB); 4 x 512 at 3e-3 learn in ~10 s more
    result = run_cli([*SMOKE, "--set", "model.kind=dncnn", "--set", "evaluation.baseline=none", "--set",
                      "train.epochs=4", "--set", "data.patches_per_epoch=512", "--set", "train.learning_rate=3e-3"],
                     cwd=tmp_path, backend="jax", hide_tensorflow=True)
    assert result.code == 0, result.err[-3000:]
    _, run = only_run(tmp_path, "image-denoising")
    assert run.info.status == "FINISHED" and run.data.tags["backend"] == "jax"
    assert run.info.run_name.startswith("dncnn-smoke-") and "test_nl_means_psnr" not in run.data.metrics
    # it denoises on JAX: the output is cleaner than the noisy input it was given (~20.17 dB at sigma 25, as the
    # run measures it on the same images); this run gained 2.3 dB here
    metrics = run.data.metrics
    assert metrics["test_noisy_psnr"] == pytest.approx(20.17, abs=0.1)
    assert metrics["test_psnr"] > metrics["test_noisy_psnr"] + 1.5
