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
from tests.support.mlflow_models import answer_as_served, assert_pyfunc_confined, load_pyfunc, model_file
from tests.support.serving import (assert_confined, b64_file, b64_pixels, file_pixels, json_lines, same_answers,
                                   scoring_server, without)
from tests.support.smoke_runs import shared_smoke_run

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
    return shared_smoke_run("medical-imaging", tmp_path_factory)  # SMOKE, train.epochs=3, model.tta_flip=true


CT, MR = get_testdata_file("CT_small.dcm"), get_testdata_file("MR_small.dcm")  # real CT and brain MR slices


@pytest.fixture(scope="module")
def ct_and_mr(smoke_run, tmp_path_factory):
    """`deepsuite predict` on pydicom's CT and MR slices with the chest X-ray model: printed and --json."""
    folder, _ = smoke_run
    _, run = only_run(folder)
    cams = tmp_path_factory.mktemp("ct-mr-cams")
    printed = run_cli(["predict", run.info.run_id, CT, MR, "-o", str(cams)], cwd=folder)
    answered = run_cli(["predict", run.info.run_id, CT, MR, "-o", str(cams), "--json"], cwd=folder)
    assert printed.code == 0 and answered.code == 0, printed.err[-2000:] + answered.err[-2000:]
    return printed, [json.loads(line) for line in answered.out.strip().splitlines()]


def _artifact_text(client, run_id, path):
    local = client.download_artifacts(run_id, path)
    with open(local, encoding="utf-8") as handle:
        return handle.read()


@needs_pneumonia
def test_run_logs_clinical_metrics_curves_and_gradcam(smoke_run, tmp_path):
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
    # the logged MLflow model's input example (two images as pixel arrays) is synthetic: no patient's scan
    # goes into the tracking store
    example = np.asarray(json.loads(model_file(folder, run, "input_example.json", tmp_path / "model").read_text())
                         ["inputs"])
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


def _predict_test_xray(smoke_run, index, tmp_path, output):
    """(folder, run, the one answer) of `deepsuite predict RUN xray.png --output OUTPUT --json` on test image
    `index`, saved enlarged as tmp_path/xray.png."""
    folder, _ = smoke_run
    _, run = only_run(folder)
    _save_enlarged_test_xray(index, tmp_path / "xray.png")
    result = run_cli(["predict", run.info.run_id, str(tmp_path / "xray.png"), "--output", str(output), "--json"],
                     cwd=folder)
    assert result.code == 0, result.err[-2000:]
    [answer] = json_lines(result.out)
    return folder, run, answer


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
def test_logged_mlflow_model_answers_an_xray_with_its_gradcam_like_the_cli(smoke_run, tmp_path, monkeypatch):
    """The logged MLflow model takes an X-ray's bytes, answers what `deepsuite predict --json` prints and, with
    the param "output": true, sends the Grad-CAM overlay back base64-encoded; paths are refused and nothing is
    written here (the overlay is drawn in a per-request temporary folder)."""
    folder, run, expected = _predict_test_xray(smoke_run, 3, tmp_path, tmp_path / "cams")
    model = load_pyfunc(folder, f"runs:/{run.info.run_id}/model", monkeypatch)
    params = {p.name: (p.dtype.name, p.default) for p in model.metadata.get_params_schema().params}
    assert params == {"command": ("string", "predict"), "output": ("boolean", False)}
    [served] = answer_as_served(model, {"inputs": [b64_file(tmp_path / "xray.png")], "params": {"output": True}})
    [plain] = answer_as_served(model, {"inputs": [b64_file(tmp_path / "xray.png")]})  # overlay not asked for
    assert plain["gradcam"] == "xray.gradcam.png" and served["input"] == "inputs[0]"
    assert same_answers(without([served], "input", "gradcam", "summary"), without([expected], "input", "gradcam", "summary"))
    assert np.array_equal(b64_pixels(served["gradcam"]), file_pixels(expected["gradcam"]))  # the same overlay
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    assert_pyfunc_confined(model, cwd, tmp_path, lambda path: [
        {"inputs": [path], "params": {"output": True}},
        {"inputs": [b64_file(tmp_path / "xray.png")], "params": {"output": path}}], monkeypatch, refused=True)


@needs_pneumonia
def test_served_dicom_gets_the_same_domain_warning_and_ood_score_as_the_cli(smoke_run, ct_and_mr):
    folder, _ = smoke_run
    _, run = only_run(folder)
    _, [ct_answer, _] = ct_and_mr
    with scoring_server(run.info.run_id, folder) as server:
        [served] = server.post({"inputs": [{"b64": b64_file(CT)["b64"]}]})  # no name: found DICOM by its 'DICM' magic
    assert served["out_of_distribution"] is True and served["dicom"] == {"modality": "CT", "body_part": None}
    assert same_answers(without([served], "input", "gradcam", "summary"), without([ct_answer], "input", "gradcam", "summary"))
    assert "WARNING: DICOM header says Modality CT" in served["summary"] and CT not in served["summary"]


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
    assert "OUT OF DISTRIBUTION" in predicted.out and "WARNING: DICOM header says Modality CT" in predicted.out


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


@pytest.fixture(scope="module")
def ensemble_refusing_run(tmp_path_factory):
    """A 2-member ensemble whose config refuses DICOMs of another modality or body part."""
    folder = tmp_path_factory.mktemp("medical-ensemble")
    result = run_cli([*SMOKE, "--set", "train.epochs=1", "--set", "model.ensemble_members=2",
                      "--set", "domain.policy=refuse"], cwd=folder)
    assert result.code == 0, result.err[-3000:]
    return folder


@needs_pneumonia
def test_ensemble_smoke_run_exports_one_model_that_predicts_with_gradcam(ensemble_refusing_run):
    tmp_path = ensemble_refusing_run
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
    # the out-of-distribution score works on the members' features side by side (16 + 16 here)
    assert answer["out_of_distribution"] == (answer["ood_score"] > answer["ood_threshold"] > 0)
    assert "32 features" in json.loads((export.parent / "deepsuite.json").read_text())["metadata"]["ood"]["method"]


@needs_pneumonia
def test_refuse_policy_fails_a_ct_slice_in_one_line_and_writes_no_overlay(ensemble_refusing_run, tmp_path):
    _, run = only_run(ensemble_refusing_run)
    with np.load(PNEUMONIA) as stored:
        Image.fromarray(stored["test_images"][0]).save(tmp_path / "xray.png")
    result = run_cli(["predict", run.info.run_id, str(tmp_path / "xray.png"), CT, "-o", str(tmp_path / "cams")],
                     cwd=ensemble_refusing_run)
    assert result.code == 2 and result.out == "" and "Traceback" not in result.err
    ours = [line for line in result.err.splitlines() if not _tensorflow_log(line)]
    assert ours == [f"error: {CT}: DICOM header says Modality CT, body part not stated; this model is meant for "
                    "Modality CR or DX, body part CHEST (refused: domain.policy=refuse)"]
    assert not (tmp_path / "cams").exists()  # not even the chest X-ray's overlay: nothing is answered


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


@needs_pneumonia
def test_ct_and_mr_slices_are_flagged_out_of_distribution_with_a_modality_warning(ct_and_mr):
    printed, answers = ct_and_mr
    lines = printed.out.strip().splitlines()
    assert len(lines) == 2
    for line, answer, (path, modality) in zip(lines, answers, [(CT, "CT"), (MR, "MR")]):
        assert line.startswith(f"{path}: ") and "OUT OF DISTRIBUTION (ood score" in line
        assert (f"WARNING: DICOM header says Modality {modality}, body part not stated; this model is meant for "
                "Modality CR or DX, body part CHEST") in line
        assert answer["dicom"] == {"modality": modality, "body_part": None}
        assert answer["out_of_distribution"] is True and answer["ood_score"] > answer["ood_threshold"] > 0
        assert any(w.startswith(f"DICOM header says Modality {modality}") for w in answer["warnings"])
        assert any(w.startswith("out of distribution") for w in answer["warnings"])


@needs_pneumonia
def test_a_chest_xray_is_in_distribution_and_warned_about_by_nothing(smoke_run, tmp_path):
    _, _, answer = _predict_test_xray(smoke_run, 1, tmp_path, tmp_path / "cam.png")
    assert answer["out_of_distribution"] is False and answer["warnings"] == [] and "dicom" not in answer
    assert "OUT OF DISTRIBUTION" not in answer["summary"] and "WARNING" not in answer["summary"]


@needs_pneumonia
def test_ood_threshold_chosen_on_validation_flags_at_most_5_percent_of_chest_test_images(smoke_run):
    folder, _ = smoke_run
    client, run = only_run(folder)
    metrics = run.data.metrics
    assert metrics["test_ood_flagged_fraction"] <= 0.05 and metrics["test_val_ood_flagged_fraction"] <= 0.05
    rows = list(csv.DictReader(io.StringIO(_artifact_text(client, run.info.run_id, "tables/ood.csv"))))
    per_class = [r for r in rows if r["split"] in ("validation", "test")]
    assert {(r["split"], r["class"]) for r in per_class} == {(s, c) for s in ("validation", "test")
                                                              for c in ("normal", "pneumonia")}
    test_rows = [r for r in per_class if r["split"] == "test"]
    assert sum(int(r["images"]) for r in test_rows) == 200
    assert sum(int(r["flagged"]) for r in test_rows) / 200 == pytest.approx(metrics["test_ood_flagged_fraction"])
    assert all(float(r["flagged_fraction"]) <= 0.05 for r in per_class if r["split"] == "validation")
    report = _artifact_text(client, run.info.run_id, "report.html")
    assert "out-of-distribution score" in report and "of test images" in report


@needs_pneumonia
def test_export_records_the_expected_domain_and_the_ood_threshold(smoke_run):
    folder, _ = smoke_run
    client, run = only_run(folder)
    metadata = json.loads(_artifact_text(client, run.info.run_id, "export/deepsuite.json"))["metadata"]
    assert metadata["domain"] == {"modalities": ["CR", "DX"], "body_parts": ["CHEST"], "policy": "warn"}
    check = metadata["ood"]
    assert check["threshold"] == pytest.approx(run.data.metrics["test_ood_threshold"]) and check["rate"] == 0.05
    assert check["chosen_on"].startswith("validation") and check["file"] == "ood.npz"
    assert check["test_flagged"] == pytest.approx(run.data.metrics["test_ood_flagged_fraction"])
    with np.load(client.download_artifacts(run.info.run_id, "export/ood.npz"), allow_pickle=False) as stats:
        assert stats["means"].shape == (2, 16) and stats["precisions"].shape == (2, 16, 16)  # widths [8, 16]


@needs_pneumonia
def test_no_dicom_patient_identifier_reaches_predict_output_or_the_mlflow_store(smoke_run, ct_and_mr):
    folder, _ = smoke_run
    printed, answers = ct_and_mr
    identifiers = []
    for path in (CT, MR):
        header = pydicom.dcmread(path, stop_before_pixels=True)
        identifiers += [str(header.PatientName), str(header.PatientID)]
        identifiers += [part for part in str(header.PatientName).split("^") if len(part) > 3]
    assert "CompressedSamples^CT1" in identifiers and "4MR1" in identifiers
    # the header was read (its modality is reported), and nothing naming the patient came out of it
    assert [answer["dicom"]["modality"] for answer in answers] == ["CT", "MR"]
    said = printed.out + printed.err + json.dumps(answers)
    stored = b"".join(p.read_bytes() for p in (folder / "mlruns").rglob("*") if p.is_file())
    for identifier in identifiers:
        assert identifier not in said and identifier.encode() not in stored, identifier


@pytest.mark.filterwarnings("ignore:Invalid value for VR CS")  # 'chest': real files do write it in lower case
def test_domain_check_holds_only_what_a_dicom_header_states_against_it(tmp_path):
    from deepsuite.pipelines.medical_imaging.contract import ExpectedDomain
    from deepsuite.pipelines.medical_imaging.dicom import read_domain
    from deepsuite.pipelines.medical_imaging.inference import domain_mismatch

    chest = ExpectedDomain(modalities=["CR", "DX"], body_parts=["CHEST"], policy="refuse")

    def header(modality, body_part):
        dicom = pydicom.dcmread(CT)
        dicom.Modality = modality
        if body_part is not None:
            dicom.BodyPartExamined = body_part
        path = tmp_path / f"{modality}-{body_part}.dcm"
        dicom.save_as(path)
        return read_domain(path)

    assert header("DX", "chest") == ("DX", "CHEST")
    assert domain_mismatch(header("DX", "chest"), chest) is None
    assert domain_mismatch(header("CR", None), chest) is None  # body part omitted: not held against it
    assert domain_mismatch(header("CR", "HAND"), chest) == ("DICOM header says Modality CR, body part HAND; this "
                                                            "model is meant for Modality CR or DX, body part CHEST")
    assert domain_mismatch(header("MR", "CHEST"), chest).startswith("DICOM header says Modality MR, body part CHEST;")
    assert domain_mismatch(header("MR", None), ExpectedDomain()) is None  # [] and []: nothing checked
    assert domain_mismatch(None, chest) is None  # PNG/JPEG: no header


def test_ledoit_wolf_shrinkage_follows_its_definition_and_keeps_a_wide_covariance_invertible():
    from deepsuite.pipelines.medical_imaging.ood import RIDGE, Detector, shrunk_covariance

    rng = np.random.default_rng(0)
    for n, d in ((30, 50), (400, 16)):  # more features than images, and the other way round
        x = rng.normal(size=(n, d)) * rng.uniform(0.5, 3.0, d)
        x -= x.mean(axis=0)
        sample = x.T @ x / n
        mu = np.trace(sample) / d
        dispersion = ((sample - mu * np.eye(d)) ** 2).sum() / d
        spread = sum(((np.outer(row, row) - sample) ** 2).sum() for row in x) / n ** 2 / d  # Ledoit & Wolf, 2004
        shrinkage = min(spread, dispersion) / dispersion
        expected = shrinkage * mu * np.eye(d) + (1 - shrinkage) * sample + RIDGE * mu * np.eye(d)
        assert np.abs(shrunk_covariance(x) - expected).max() < 1e-9
        assert np.linalg.eigvalsh(shrunk_covariance(x)).min() > 0
    # two classes far apart: each image scores low, a point away from both scores high
    features = np.concatenate([rng.normal(0, 1, (200, 4)), rng.normal(10, 1, (200, 4))])
    detector = Detector.fit(features, np.repeat([0, 1], 200))
    near, far = detector.score(np.array([[0.0] * 4, [10.0] * 4])), detector.score(np.array([[5.0] * 4]))
    assert near.max() < 5 and far[0] > 50
