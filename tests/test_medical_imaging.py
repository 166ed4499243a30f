"""Medical imaging end to end through the real CLI: PneumoniaMNIST subset, real sqlite MLflow store."""
from __future__ import annotations

import csv
import io
import json

import mlflow
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from tests.support.data import needs_pneumonia
from tests.support.cli import SHARED_DATA, run_cli
from tests.support.serving import (assert_confined, b64_file, b64_pixels, file_pixels, json_lines, same_answers,
                                   scoring_server, without)

PNEUMONIA = SHARED_DATA / "pneumoniamnist.npz"
SMOKE = ["run", "medical-imaging", "--preset", "smoke", "--set", f"data.source=medmnist:{PNEUMONIA}"]


def only_run(folder):
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{folder}/mlruns/mlflow.db")
    experiment = client.get_experiment_by_name("medical-imaging")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    return client, runs[0]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("medical-smoke")
    result = run_cli([*SMOKE, "--set", "train.epochs=3", "--set", "model.tta_flip=true"], cwd=folder)
    assert result.code == 0, result.err[-3000:]
    return folder, result


def _artifact_text(client, run_id, path):
    local = client.download_artifacts(run_id, path)
    with open(local, encoding="utf-8") as handle:
        return handle.read()


@needs_pneumonia
def test_run_logs_clinical_metrics_curves_and_gradcam(smoke_run):
    folder, result = smoke_run
    client, run = only_run(folder)
    assert run.info.status == "FINISHED" and "done: medical-imaging" in result.out
    metrics = run.data.metrics
    for name in ("roc_auc", "pr_auc", "accuracy", "sensitivity", "specificity", "precision", "f1", "threshold",
                 "ece", "val_roc_auc"):
        assert 0.0 <= metrics[f"test_{name}"] <= 1.0, name
    assert metrics["test_roc_auc"] > 0.6  # 3 tiny epochs already separate pneumonia from normal
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/roc_curve.png", "plots/precision_recall_curve.png", "plots/confusion_matrix.png",
            "plots/calibration.png", "plots/gradcam.png", "plots/learning_curves.png"} <= plots
    assert run.data.params["data.size.test"] == "200" and run.data.params["model.class_weight"] == "balanced"
    # the logged MLflow model's input example is synthetic: no patient's scan goes into the tracking store
    from mlflow.models import Model

    local = client.download_artifacts(run.info.run_id, "model")
    example = np.asarray(Model.load(local).load_input_example(local))
    with np.load(PNEUMONIA) as stored:
        scans = stored["test_images"].reshape(len(stored["test_images"]), -1)
    assert example.shape[1:3] == (28, 28) and not any((scans == row.reshape(-1)).all(axis=1).any() for row in example)


@needs_pneumonia
def test_threshold_is_chosen_on_validation_and_applied_unchanged_to_test(smoke_run):
    folder, _ = smoke_run
    client, run = only_run(folder)
    threshold = run.data.metrics["test_threshold"]
    rows = list(csv.DictReader(io.StringIO(_artifact_text(client, run.info.run_id, "tables/test_predictions.csv"))))
    assert len(rows) == 200
    scores = np.array([float(r["score"]) for r in rows])
    truth = np.array([r["label"] == "pneumonia" for r in rows])
    called = np.array([r["predicted"] == "pneumonia" for r in rows])
    assert np.array_equal(called, scores >= threshold)
    assert run.data.metrics["test_sensitivity"] == pytest.approx(np.mean(called[truth]))
    assert run.data.metrics["test_specificity"] == pytest.approx(np.mean(~called[~truth]))
    operating = _artifact_text(client, run.info.run_id, "tables/operating_point.csv")
    assert operating.splitlines()[1].startswith("validation,") and ",sensitivity," in operating
    exported = json.loads(_artifact_text(client, run.info.run_id, "export/deepsuite.json"))
    assert exported["metadata"]["decision"]["threshold"] == pytest.approx(threshold)


def _save_enlarged_test_xray(index, path):
    """A real PneumoniaMNIST test image at 4x (112 px), as a user's PNG would be larger than the model's input."""
    with np.load(PNEUMONIA) as stored:
        Image.fromarray(np.kron(stored["test_images"][index], np.ones((4, 4), np.uint8))).save(path)


@needs_pneumonia
def test_predict_png_and_dicom_prints_probability_and_writes_gradcam(smoke_run, tmp_path):
    folder, _ = smoke_run
    _, run = only_run(folder)
    _save_enlarged_test_xray(0, tmp_path / "xray.png")
    dicom = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    dicom.PhotometricInterpretation = "MONOCHROME1"
    dicom.save_as(tmp_path / "scan.dcm")
    result = run_cli(["predict", run.info.run_id, str(tmp_path / "xray.png"), str(tmp_path / "scan.dcm"),
                      "--output", str(tmp_path / "cams"), "--json"], cwd=folder)
    assert result.code == 0, result.err[-2000:]
    answers = [json.loads(line) for line in result.out.strip().splitlines()]
    assert [a["input"] for a in answers] == [str(tmp_path / "xray.png"), str(tmp_path / "scan.dcm")]
    for answer in answers:
        assert 0 <= answer["probability"] <= 1 and answer["positive_class"] == "pneumonia"
        assert answer["label"] == ("pneumonia" if answer["probability"] >= answer["threshold"] else "normal")
        overlay = Image.open(answer["gradcam"])  # drawn over the input at its own size (112 px PNG, 128 px CT)
        assert overlay.mode == "RGB" and overlay.size == ((112, 112) if "xray" in answer["input"] else (128, 128))
    assert answers[0]["summary"].startswith(f"{tmp_path / 'xray.png'}: ") and "p(pneumonia)=" in answers[0]["summary"]


@needs_pneumonia
def test_served_predictions_and_gradcam_equal_the_cli_on_the_same_xray(smoke_run, tmp_path):
    folder, _ = smoke_run
    _, run = only_run(folder)
    _save_enlarged_test_xray(3, tmp_path / "xray.png")
    with scoring_server(run.info.run_id, folder) as server:  # starts while the CLI runs
        cli = run_cli(["predict", run.info.run_id, str(tmp_path / "xray.png"), "--output", str(tmp_path / "cams"),
                       "--json"], cwd=folder)
        assert cli.code == 0, cli.err[-2000:]
        [expected] = json_lines(cli.out)
        [served] = server.post({"inputs": [b64_file(tmp_path / "xray.png")], "output": True})  # Grad-CAM sent back
        [plain] = server.post({"inputs": [b64_file(tmp_path / "xray.png")]})  # not asked for: not sent, not left
        assert_confined(server, folder, tmp_path, lambda path: [{"inputs": [path], "output": True},
                                                                {"inputs": [b64_file(tmp_path / "xray.png")], "output": path}],
                        refused=True)
    assert plain["gradcam"] == "xray.gradcam.png" and not list(folder.rglob("*.gradcam.png"))
    assert served["input"] == "inputs[0]"
    assert same_answers(without([served], "input", "gradcam", "summary"), without([expected], "input", "gradcam", "summary"))
    assert expected["probabilities"] and expected["threshold"] is not None
    assert served["summary"] == expected["summary"].replace(f"{tmp_path / 'cams'}/", "").replace(
        str(tmp_path / "xray.png"), "inputs[0]")
    assert np.array_equal(b64_pixels(served["gradcam"]), file_pixels(expected["gradcam"]))  # the same overlay


@needs_pneumonia
def test_predict_on_a_non_image_dicom_is_one_clear_line(smoke_run):
    folder, _ = smoke_run
    _, run = only_run(folder)
    plan = get_testdata_file("rtplan.dcm")
    result = run_cli(["predict", run.info.run_id, plan], cwd=folder, backend="jax")  # a TF-trained model on JAX
    assert result.code == 2 and "Traceback" not in result.err
    ours = [line for line in result.err.splitlines() if not _tensorflow_log(line)]
    assert ours == [
        f"error: {plan}: DICOM without an image (modality/SOP class RTPLAN); expected an image such as an X-ray "
        "(CR/DX), CT or MR slice"]


def _tensorflow_log(line: str) -> bool:
    """TensorFlow's C++ start-up lines (absl/oneDNN) that TF_CPP_MIN_LOG_LEVEL does not silence."""
    return line.startswith(("WARNING: All log messages before absl", "I0000 ", "W0000 "))


@needs_pneumonia
def test_npz_with_missing_keys_fails_the_run_with_the_key(tmp_path):
    with np.load(PNEUMONIA) as stored:
        arrays = {k: stored[k][:50] for k in stored.files if k != "test_labels"}
    np.savez(tmp_path / "partial.npz", **arrays)
    result = run_cli(["run", "medical-imaging", "--preset", "smoke", "--set",
                      f"data.source=medmnist:{tmp_path / 'partial.npz'}"], cwd=tmp_path, backend="jax")
    assert result.code == 2 and "missing key(s) test_labels" in result.err and "partial.npz" in result.err
    _, run = only_run(tmp_path)
    assert run.info.status == "FAILED" and "test_labels" in run.data.tags["deepsuite.status_reason"]


# slow step: the default suite keeps the JAX-without-TensorFlow path of image classification and tuning
@needs_pneumonia
@pytest.mark.slow
def test_jax_backend_without_tensorflow_trains_and_draws_gradcam(tmp_path):
    result = run_cli([*SMOKE, "--set", "train.epochs=1"], cwd=tmp_path, backend="jax", hide_tensorflow=True)
    assert result.code == 0, result.err[-3000:]
    client, run = only_run(tmp_path)
    assert run.info.status == "FINISHED" and run.data.tags["backend"] == "jax"
    # it learns on JAX: one epoch reached test ROC-AUC 0.86 here (0.5 is chance)
    assert run.data.metrics["test_roc_auc"] > 0.75
    assert "plots/gradcam.png" in {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    export = next((tmp_path / "mlruns" / "artifacts").rglob("export/model.keras"))
    dicom = get_testdata_file("CT_small.dcm")
    predicted = run_cli(["predict", str(export), dicom, "-o", str(tmp_path / "ct.png")], cwd=tmp_path,
                        backend="jax", hide_tensorflow=True)
    assert predicted.code == 0, predicted.err[-2000:]
    assert (tmp_path / "ct.png").exists() and predicted.out.startswith(f"{dicom}: ")


@needs_pneumonia
def test_gradcam_gradients_equal_the_analytic_cam_of_a_gap_dense_head():
    """For GAP -> Dense, Grad-CAM's channel weights are the logit kernel column / (h*w): an exact check
    of the backend gradient path (the same check passes under KERAS_BACKEND=jax)."""
    import keras

    from deepsuite.pipelines.medical_imaging.config import ModelConfig
    from deepsuite.pipelines.medical_imaging.gradcam import GradCam
    from deepsuite.pipelines.medical_imaging.model import build_cnn, classifier_of

    keras.utils.set_random_seed(1)
    model = build_cnn((28, 28, 1), 2, ModelConfig(widths=[8, 16], blocks_per_stage=1, tta_flip=True,
                                                  min_input_side=None))
    with np.load(PNEUMONIA) as stored:
        images = stored["test_images"][:6, ..., None]
    classes = np.array([0, 1, 0, 1, 1, 0])
    gradcam = GradCam(model)
    heatmaps = gradcam(images, classes)
    kernel = keras.ops.convert_to_numpy(classifier_of(model).get_layer("logits").kernel)
    maps = keras.ops.convert_to_numpy(gradcam.features(images))
    cam = np.maximum(np.einsum("nhwc,cn->nhw", maps, kernel[:, classes]), 0)
    cam /= np.maximum(cam.max(axis=(1, 2), keepdims=True), 1e-12)
    assert heatmaps.shape == (6, 14, 14) and np.abs(heatmaps - cam).max() < 1e-4


@needs_pneumonia
@pytest.mark.parametrize("train_mirror", [False, True])
def test_flip_tta_averages_the_mirrored_prediction_and_survives_save_and_load(tmp_path, train_mirror):
    import keras

    from deepsuite.pipelines.medical_imaging.config import ModelConfig
    from deepsuite.pipelines.medical_imaging.model import build_cnn, classifier_of

    keras.utils.set_random_seed(2)
    model = build_cnn((28, 28, 1), 2, ModelConfig(widths=[8], blocks_per_stage=1, tta_flip=True,
                                                  tta_train_mirror=train_mirror, min_input_side=None))
    with np.load(PNEUMONIA) as stored:
        images = stored["test_images"][:4, ..., None]
    pixels = images.astype("float32") / 255
    classifier = classifier_of(model)
    expected = (classifier.predict(pixels, verbose=0) + classifier.predict(pixels[:, :, ::-1], verbose=0)) / 2
    probs = model.predict(images, verbose=0)
    assert np.abs(probs - expected).max() < 1e-5
    model.save(tmp_path / "m.keras")
    assert np.abs(keras.models.load_model(tmp_path / "m.keras").predict(images, verbose=0) - probs).max() < 1e-5


def test_mixup_batches_blend_images_labels_and_class_weights():
    from deepsuite.pipelines.medical_imaging.mixup import MixupBatches

    x = np.stack([np.zeros((4, 4, 1), "uint8"), np.full((4, 4, 1), 200, "uint8")] * 5)
    y = np.array([0, 1] * 5)
    batches = MixupBatches(x, y, 2, batch_size=4, alpha=0.4, class_weight={0: 2.0, 1: 1.0}, seed=0)
    assert len(batches) == 3
    seen = 0
    for i in range(len(batches)):
        images, labels, weights = batches[i]
        seen += len(images)
        assert images.dtype == np.uint8 and np.allclose(labels.sum(axis=1), 1)
        # an image's brightness tells how much of the class-1 image went into it, and so its label
        assert np.allclose(images[:, 0, 0, 0] / 200, labels[:, 1], atol=0.01)
        assert np.allclose(weights, 2.0 * labels[:, 0] + 1.0 * labels[:, 1], atol=1e-5)
    assert seen == 10


@needs_pneumonia
def test_ensemble_trains_each_member_on_its_own_loss_and_averages_them_at_inference():
    import keras

    from deepsuite.pipelines.medical_imaging.config import ModelConfig
    from deepsuite.pipelines.medical_imaging.gradcam import GradCam
    from deepsuite.pipelines.medical_imaging.model import EnsembleCrossentropy, build_cnn, classifiers_of

    keras.utils.set_random_seed(3)
    model = build_cnn((28, 28, 1), 2, ModelConfig(widths=[8], blocks_per_stage=1, tta_flip=True,
                                                  ensemble_members=2, min_input_side=None))
    with np.load(PNEUMONIA) as stored:
        images = stored["test_images"][:4, ..., None]
    pixels = images.astype("float32") / 255
    members = classifiers_of(model)
    assert [m.name for m in members] == ["classifier_0", "classifier_1"]
    # two members, two initialisations: their kernels differ
    kernels = [keras.ops.convert_to_numpy(m.get_layer("logits").kernel) for m in members]
    assert np.abs(kernels[0] - kernels[1]).max() > 1e-3
    # inference: the mean of both members on the image and its mirror
    singles = [m.predict(p, verbose=0) for m in members for p in (pixels, pixels[:, :, ::-1])]
    assert np.abs(model.predict(images, verbose=0) - np.mean(singles, axis=0)).max() < 1e-5
    # training: every member's probabilities side by side, and the loss is the mean of the members' losses
    side_by_side = keras.ops.convert_to_numpy(model(images, training=True))
    assert side_by_side.shape == (4, 4)
    labels = np.eye(2, dtype="float32")[[0, 1, 1, 0]]
    loss = EnsembleCrossentropy(label_smoothing=0.1)
    single = keras.losses.CategoricalCrossentropy(label_smoothing=0.1)
    expected = (float(single(labels, side_by_side[:, :2])) + float(single(labels, side_by_side[:, 2:]))) / 2
    assert float(loss(labels, side_by_side)) == pytest.approx(expected, rel=1e-5)
    assert GradCam(model)(images, np.array([0, 1, 0, 1])).shape == (4, 28, 28)


@needs_pneumonia
def test_ensemble_smoke_run_exports_one_model_that_predicts_with_gradcam(tmp_path):
    result = run_cli([*SMOKE, "--set", "train.epochs=1", "--set", "model.ensemble_members=2"], cwd=tmp_path)
    assert result.code == 0, result.err[-3000:]
    client, run = only_run(tmp_path)
    assert run.info.status == "FINISHED" and run.data.params["model.ensemble_members"] == "2"
    assert 0.0 <= run.data.metrics["test_roc_auc"] <= 1.0
    export = next((tmp_path / "mlruns" / "artifacts").rglob("export/model.keras"))
    import keras

    from deepsuite.pipelines.medical_imaging.model import classifiers_of

    assert len(classifiers_of(keras.saving.load_model(export))) == 2
    with np.load(PNEUMONIA) as stored:
        Image.fromarray(stored["test_images"][0]).save(tmp_path / "xray.png")
    predicted = run_cli(["predict", run.info.run_id, str(tmp_path / "xray.png"), "-o", str(tmp_path / "cam.png"),
                         "--json"], cwd=tmp_path)
    assert predicted.code == 0, predicted.err[-2000:]
    answer = json.loads(predicted.out)
    assert 0 <= answer["probability"] <= 1 and Image.open(tmp_path / "cam.png").mode == "RGB"


def test_small_images_are_enlarged_inside_the_model_and_larger_ones_pass_unchanged():
    from deepsuite.pipelines.medical_imaging.config import ModelConfig
    from deepsuite.pipelines.medical_imaging.model import PREPROCESSED, build_cnn

    def preprocessed_shape(stored, **options):
        model = build_cnn((*stored, 1), 2, ModelConfig(widths=[4], blocks_per_stage=1, **options))
        return tuple(model.get_layer(PREPROCESSED).output.shape[1:3])

    assert preprocessed_shape((28, 28)) == (28, 28)  # by default images keep their size
    assert preprocessed_shape((28, 28), min_input_side=40) == (40, 40)  # MedMNIST 28 px enlarged to 40
    assert preprocessed_shape((28, 56), min_input_side=40) == (40, 80)  # aspect kept
    assert preprocessed_shape((64, 64), min_input_side=40) == (64, 64)  # folder images at 64 px are not shrunk
    assert preprocessed_shape((64, 64), input_size=(32, 32)) == (32, 32)  # an explicit size wins
