"""Image classification end to end through the real CLI: Fashion-MNIST subset, real sqlite MLflow store."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from deepsuite.common.data import labeled_images
from tests.support.data import needs_fashion_mnist
from tests.support.cli import run_cli
from tests.support.mlflow_models import answer_as_served, assert_pyfunc_confined, load_pyfunc, logged_model, model_file
from tests.support.serving import assert_confined, b64_file, json_lines, same_answers, scoring_server
from tests.support.smoke_runs import shared_smoke_run
from tests.support.store import only_run

pytestmark = needs_fashion_mnist
SMOKE = ["run", "image-classification", "--preset", "smoke"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    return shared_smoke_run("image-classification", tmp_path_factory)  # train.epochs=3, model.dropout=0.2


def test_run_is_recorded_completely(smoke_run):
    folder, result = smoke_run
    client, run = only_run(folder, "image-classification")
    assert run.info.status == "FINISHED" and run.info.run_name.startswith("cnn-smoke-")
    assert "resolved config" in result.out and "done: image-classification" in result.out
    assert run.info.run_id in result.out and "model:" in result.out and "report:" in result.out
    params, tags, metrics = run.data.params, run.data.tags, run.data.metrics
    assert params["train.epochs"] == "3" and params["model.dropout"] == "0.2" and params["data.size.train"] == "1200"
    for tag in ("backend", "device", "seed", "git_commit", "git_dirty", "version.keras", "determinism"):
        assert tag in tags, tag
    assert tags["backend"] == "tensorflow"
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and "test_macro_f1" in metrics
    history = client.get_metric_history(run.info.run_id, "val_accuracy")
    assert [m.step for m in history] == [1, 2, 3]  # one point per epoch
    assert run.inputs.dataset_inputs and run.inputs.dataset_inputs[0].dataset.name == "fashion_mnist"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"plots", "export", "report.html", "config.yaml", "tables"} <= artifacts
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/learning_curves.png", "plots/confusion_matrix.png"} <= plots
    # the MLflow model is the run's LoggedModel (Models page, models:/m-<id>), its test metrics linked to it
    model = logged_model(folder, run)
    model_files = {a.path for a in client.list_logged_model_artifacts(model.model_id)}
    assert {"MLmodel", "input_example.json", "serving_input_example.json", "requirements.txt"} <= model_files
    assert {"artifacts/export/model.keras", "artifacts/export/deepsuite.json"} <= {
        a.path for a in client.list_logged_model_artifacts(model.model_id, "artifacts/export")}
    linked = {m.key: m for m in model.metrics}
    assert linked["test_accuracy"].value == metrics["test_accuracy"]
    assert linked["test_accuracy"].dataset_name == "fashion_mnist" and linked["test_accuracy"].dataset_digest
    assert model.params["model.dropout"] == "0.2" and model.tags["deepsuite.pipeline"] == "image-classification"


def test_logged_mlflow_model_answers_raw_images_like_the_cli(smoke_run, tmp_path, monkeypatch):
    """`mlflow.pyfunc.load_model` on the logged model (by runs:/ and by models:/m-<id>) takes what a user has,
    a PNG's bytes or a pixel array, with the command's options as params, and answers class names with the
    probabilities `deepsuite predict --json` prints; its signature has the options as a params schema."""
    folder, _ = smoke_run
    _, run = only_run(folder, "image-classification")
    image = labeled_images.load("fashion_mnist").test_x[7, ..., 0]
    Image.fromarray(image).save(tmp_path / "item.png")
    cli = run_cli(["predict", run.info.run_id, str(tmp_path / "item.png"), "--top", "4", "--json"], cwd=folder)
    assert cli.code == 0, cli.err[-2000:]
    [expected] = json_lines(cli.out)
    by_run = load_pyfunc(folder, f"runs:/{run.info.run_id}/model", monkeypatch)
    params = {p.name: (p.dtype.name, p.default) for p in by_run.metadata.get_params_schema().params}
    assert params == {"command": ("string", "predict"), "top": ("long", 3)}
    by_file, by_array = by_run.predict([b64_file(tmp_path / "item.png"), image], params={"top": 4})
    assert len(expected["top"]) == 4 and same_answers(by_file, {**expected, "input": "inputs[0]"}), (by_file, expected)
    assert same_answers(by_array, {**expected, "input": "inputs[1]"}), (by_array, expected)
    by_id = load_pyfunc(folder, f"models:/{logged_model(folder, run).model_id}", monkeypatch)
    [served] = answer_as_served(by_id, {"inputs": [image.tolist()], "params": {"top": 4}})  # the server's JSON
    assert same_answers(served, {**expected, "input": "inputs[0]"}), (served, expected)
    [default] = answer_as_served(by_id, {"inputs": [b64_file(tmp_path / "item.png")]})
    assert len(default["top"]) == 3  # the params schema's default
    example = json.loads(model_file(folder, run, "serving_input_example.json", tmp_path / "model").read_text())
    assert len(answer_as_served(by_id, example)) == 2  # the logged example serves: two 28x28 pixel arrays


def test_logged_mlflow_model_takes_data_not_paths_and_writes_nothing_here(smoke_run, tmp_path, monkeypatch):
    folder, _ = smoke_run
    _, run = only_run(folder, "image-classification")
    model = load_pyfunc(folder, f"runs:/{run.info.run_id}/model", monkeypatch)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    assert_pyfunc_confined(model, cwd, tmp_path, lambda path: [{"inputs": [path]}, {"inputs": path},
                                                               {"inputs": [path], "params": {"top": 2}}],
                           monkeypatch, refused=True)


def test_report_shows_the_readme_reference_figure_beside_the_runs_own(smoke_run, tmp_path):
    """The run's report.html quotes the README's Fashion-MNIST test accuracy (declared once, on the pipeline
    class; tests/test_reports.py keeps it equal to the README) beside this smoke run's own figure."""
    folder, _ = smoke_run
    client, run = only_run(folder, "image-classification")
    report = open(client.download_artifacts(run.info.run_id, "report.html", str(tmp_path)), encoding="utf-8").read()
    assert "<h2>Reference figures</h2>" in report, report[:3000]
    section = report.split("<h2>Reference figures</h2>", 1)[1].split("<h2>", 1)[0]
    own = f"{run.data.metrics['test_accuracy']:.4f}"
    assert f"<td>test_accuracy</td><td>{own}</td><td>93.20 %</td>" in section, section
    assert "bench/image_classification.py" in section and "10,000-image test split" in section


def test_smoke_model_learns_something(smoke_run):
    folder, _ = smoke_run
    _, run = only_run(folder, "image-classification")
    assert run.data.metrics["test_accuracy"] > 0.3  # chance is 0.1


def _shirt_png(path, index=0):
    data = labeled_images.load("fashion_mnist")
    Image.fromarray(np.kron(data.test_x[index, ..., 0], np.ones((3, 3), np.uint8))).save(path)  # 84x84, resized back
    return labeled_images.FASHION_MNIST_CLASSES


def test_predict_by_run_id_and_by_path(smoke_run, tmp_path):
    folder, _ = smoke_run
    _, run = only_run(folder, "image-classification")
    names = _shirt_png(tmp_path / "item.png")
    rgb = tmp_path / "item.jpg"
    Image.open(tmp_path / "item.png").convert("RGB").save(rgb)
    by_id = run_cli(["predict", run.info.run_id, str(tmp_path / "item.png"), str(rgb), "--json"], cwd=folder)
    assert by_id.code == 0, by_id.err[-2000:]
    answers = [json.loads(line) for line in by_id.out.strip().splitlines()]
    assert len(answers) == 2 and all(a["label"] in names for a in answers)
    top = list(answers[0]["top"].items())
    assert len(top) == 3 and top[0] == (answers[0]["label"], round(answers[0]["probability"], 4))
    assert all(0 <= p <= 1 for _, p in top) and [p for _, p in top] == sorted((p for _, p in top), reverse=True)
    export = next((folder / "mlruns" / "artifacts").rglob("export/model.keras"))
    by_path = run_cli(["predict", str(export), str(tmp_path / "item.png")], cwd=tmp_path)
    assert by_path.code == 0 and by_path.out.startswith(str(tmp_path / "item.png") + ": ")


def test_served_predictions_equal_the_cli_on_the_same_image(smoke_run, tmp_path):
    folder, _ = smoke_run
    _, run = only_run(folder, "image-classification")
    image = labeled_images.load("fashion_mnist").test_x[7, ..., 0]
    Image.fromarray(image).save(tmp_path / "item.png")
    with scoring_server(run.info.run_id, folder) as server:  # starts while the CLI runs
        cli = run_cli(["predict", run.info.run_id, str(tmp_path / "item.png"), "--top", "4", "--json"], cwd=folder)
        assert cli.code == 0, cli.err[-2000:]
        [expected] = json_lines(cli.out)
        # the same file's bytes (base64), and the same pixels as a JSON array
        by_file, by_array = server.post({"inputs": [b64_file(tmp_path / "item.png"), image.tolist()], "top": 4})
        assert_confined(server, folder, tmp_path, lambda path: [{"inputs": [path]}, {"instances": [path], "top": 2}], refused=True)
    assert len(expected["top"]) == 4 and same_answers(by_file, {**expected, "input": "inputs[0]"}), (by_file, expected)
    assert same_answers(by_array, {**expected, "input": "inputs[1]"}), (by_array, expected)


def test_predict_on_a_non_image_is_one_clear_line(smoke_run, tmp_path):
    folder, _ = smoke_run
    _, run = only_run(folder, "image-classification")
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    result = run_cli(["predict", run.info.run_id, str(text)], cwd=folder)
    assert result.code == 2 and "Traceback" not in result.err
    assert result.err.strip().splitlines() == [f"error: {text}: not an image file PIL can read"]


def test_jax_backend_without_tensorflow(tmp_path):
    result = run_cli(SMOKE, cwd=tmp_path, backend="jax", hide_tensorflow=True)
    assert result.code == 0, result.err[-3000:]
    _, run = only_run(tmp_path, "image-classification")
    assert run.info.status == "FINISHED" and run.data.tags["backend"] == "jax"
    # it learns on JAX as on TensorFlow: the smoke preset reached 0.71 test accuracy here; chance is 0.1
    assert run.data.metrics["test_accuracy"] > 0.5
