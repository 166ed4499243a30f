"""Streamed medical image folders (data.stream; pipelines/medical_imaging/folder_files.py): the same pixels, labels,
patients and patient-grouped split as the arrays, every bad file named before training, mixup over files, and
a run that streams giving the test metrics of the run that loads arrays."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from deepsuite.common.data.image_files import ImageFiles
from deepsuite.common.errors import DataError
from deepsuite.pipelines.medical_imaging.config import DataConfig
from deepsuite.pipelines.medical_imaging.data import SPLITS, load_folder
from tests.support.data import PNEUMONIA, needs_pneumonia

pytestmark = needs_pneumonia


def xray_folder(root, per_class: int, kermany: bool = False):
    """Real PneumoniaMNIST training images as a folder: root/<NORMAL|PNEUMONIA>/ (or root/{train,val,test}/<class>/
    with a 2-image val/, which is merged into train) of PNGs named like Kermany's files, two images per patient,
    padded to 28 x 34 so the centre crop matters, and two DICOMs per class whose patient is in their header."""
    with np.load(PNEUMONIA) as stored:
        images, labels = stored["train_images"], stored["train_labels"].ravel()
    pools = {name: iter(np.flatnonzero(labels == k)) for k, name in enumerate(("NORMAL", "PNEUMONIA"))}
    parts = {"train": per_class, "val": 2, "test": per_class // 3} if kermany else {"": per_class}
    for first, (split, count) in zip((100, 300, 500), parts.items()):
        for name, pool in pools.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for k in range(count):
                image = np.pad(images[next(pool)], ((0, 0), (3, 3)), mode="edge")
                patient = first + k // 2
                stem = f"IM-{patient:04d}-{k:04d}" if name == "NORMAL" else f"person{patient}_bacteria_{k}"
                Image.fromarray(image).save(folder / f"{stem}.png")
            for k in range(2):
                write_dicom(images[next(pool)], folder / f"scan-{k}.dcm", patient=f"DCM-{split}{name}{k}")
    return root


def write_dicom(image: np.ndarray, path, patient: str) -> None:
    """A DX DICOM of `image` (pydicom's CT_small.dcm as the template: 16-bit signed, uncompressed)."""
    dataset = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    dataset.Rows, dataset.Columns = image.shape
    dataset.PixelData = image.astype(np.int16).tobytes()
    dataset.PatientID, dataset.Modality = patient, "DX"
    dataset.save_as(path)


@pytest.mark.parametrize("kermany", [False, True], ids=["flat", "train-val-test"])
def test_streamed_folder_is_the_arrays(tmp_path, kermany):
    root = xray_folder(tmp_path / "xrays", per_class=12, kermany=kermany)
    settings = dict(image_size=(20, 20), val_fraction=0.25, cache_dir=str(tmp_path / "cache"))
    arrays = load_folder(root, DataConfig(stream=False, **settings), seed=5)
    files = load_folder(root, DataConfig(stream=True, **settings), seed=5)
    assert files.split_note == arrays.split_note and files.leakage == arrays.leakage
    assert files.leakage["known"] and files.leakage["shared_patients"] == 0
    assert files.class_names == arrays.class_names == ["NORMAL", "PNEUMONIA"]
    for split in SPLITS:
        assert isinstance(files.images[split], ImageFiles) and not isinstance(arrays.images[split], ImageFiles)
        np.testing.assert_array_equal(files.labels[split], arrays.labels[split])
        np.testing.assert_array_equal(files.patients[split], arrays.patients[split])
        np.testing.assert_array_equal(np.asarray(files.images[split]), arrays.images[split])  # the same reader
    patients = np.concatenate([files.patients[s] for s in SPLITS])
    assert sum(p.startswith("DCM-") for p in patients) == (12 if kermany else 4)   # read from the DICOM headers
    assert files.digest != arrays.digest and len(files.digest) == 16   # the listing, not the pixels, when streamed
    if kermany:
        assert "merged into train" in files.split_note


def test_every_bad_file_is_named_before_training(tmp_path):
    """The header pass names a file that is no image, a DICOM without an image and a DICOM that is no DICOM,
    all at once, without decoding one image."""
    root = xray_folder(tmp_path / "xrays", per_class=4)
    (root / "NORMAL" / "IM-0001-0001.png").write_bytes(b"not a PNG at all")
    (root / "PNEUMONIA" / "plan.dcm").write_bytes(open(get_testdata_file("rtplan.dcm"), "rb").read())
    (root / "PNEUMONIA" / "scan.dcm").write_bytes(b"\x00" * 50)
    with pytest.raises(DataError) as err:
        load_folder(root, DataConfig(stream=True), seed=0)
    message = str(err.value)
    assert message.startswith("3 unreadable image(s) in ")
    assert "IM-0001-0001.png: not an image file PIL can read" in message
    assert "plan.dcm: DICOM without an image (modality/SOP class RTPLAN)" in message
    assert "scan.dcm: not a DICOM file" in message


def test_large_folders_stream_and_arrays_far_over_memory_are_refused(tmp_path, monkeypatch):
    root = xray_folder(tmp_path / "xrays", per_class=6)   # 16 images of 64 x 64 x 1: 64 KiB as arrays
    monkeypatch.setenv("DEEPSUITE_MEMORY_BUDGET", "128K")   # over 25 % of it: stream when data.stream is unset
    assert isinstance(load_folder(root, DataConfig(), seed=0).images["train"], ImageFiles)
    monkeypatch.setenv("DEEPSUITE_MEMORY_BUDGET", "1M")
    assert isinstance(load_folder(root, DataConfig(cache_dir=str(tmp_path / "c")), seed=0).images["train"], np.ndarray)
    monkeypatch.setenv("DEEPSUITE_MEMORY_BUDGET", "128K")   # over 40 %: arrays refused
    with pytest.raises(DataError, match=r"refusing to load it into memory; set data\.stream=true"):
        load_folder(root, DataConfig(stream=False), seed=0)


def test_mixup_over_files_gives_the_batches_of_the_arrays(tmp_path):
    from deepsuite.pipelines.medical_imaging.mixup import MixupBatches

    root = xray_folder(tmp_path / "xrays", per_class=12)
    files = load_folder(root, DataConfig(image_size=(16, 16), stream=True), seed=1)
    x, y = files.images["train"], files.labels["train"]
    streamed = MixupBatches(x, y, 2, batch_size=5, alpha=0.4, class_weight={0: 2.0, 1: 1.0}, seed=3, workers=2)
    arrays = MixupBatches(np.asarray(x), y, 2, batch_size=5, alpha=0.4, class_weight={0: 2.0, 1: 1.0}, seed=3)
    for epoch in (0, 2):
        streamed.set_epoch(epoch)
        arrays.set_epoch(epoch)
        assert len(streamed) == len(arrays) >= 2
        for i in range(len(arrays)):
            for ours, theirs in zip(streamed[i], arrays[i]):
                np.testing.assert_array_equal(ours, theirs)


def run_metrics(tmp_path, root, stream: bool, *overrides: str) -> dict[str, float]:
    from deepsuite.app import registry
    from deepsuite.common import config as config_lib
    from deepsuite.common import runner

    pipeline = registry.get("medical-imaging")
    config = config_lib.resolve(pipeline.config_cls, pipeline.presets, "smoke", None, [
        f"data.source=folder:{root}", "data.image_size=[28,28]", f"data.stream={stream}",
        f"data.cache_dir={tmp_path / 'cache'}", "tracking.log_model=false", *overrides])
    return runner.run(pipeline, config, store_dir=tmp_path / f"mlruns-{stream}", echo=lambda line: None).metrics


@pytest.mark.parametrize("mixup", [0.0, 0.4], ids=["class-weights", "mixup"])
def test_streamed_run_matches_the_arrays_run(tmp_path, mixup):
    """The smoke preset on a folder of PNG and DICOM X-rays, streamed and as arrays. Both have the same files, the
    same patient-grouped split and the same pixels (the same reader), and fit() gets the same batches: the
    (seed, epoch) order of `batches.ShuffledArrays` / its tf.data form, or the same mixup draws, with the same
    class weights; validation and test are predicted in the files' order. So with deterministic ops
    (config.deterministic) the two runs train the same weights and every test metric (threshold chosen on
    validation, sensitivity, OOD share, ...) agrees to 1e-6: only the prediction batch size differs (128
    streamed, 512 as arrays), which moves a probability by float rounding at most."""
    root = xray_folder(tmp_path / "xrays", per_class=40)
    overrides = (f"model.mixup={mixup}", "train.batch_size=16")
    streamed = run_metrics(tmp_path, root, True, *overrides)
    arrays = run_metrics(tmp_path, root, False, *overrides)
    assert set(streamed) == set(arrays) and {"test_roc_auc", "test_sensitivity", "test_ood_flagged_fraction"} <= set(arrays)
    for name, value in arrays.items():
        assert streamed[name] == pytest.approx(value, abs=1e-6), name


@pytest.mark.slow
def test_streamed_run_on_jax_without_tensorflow(tmp_path):
    """The CLI streams a medical folder on JAX with TensorFlow hidden: the batch sources are plain PyDatasets."""
    from tests.support.cli import run_cli
    from tests.support.store import only_run

    root = xray_folder(tmp_path / "xrays", per_class=16)
    result = run_cli(["run", "medical-imaging", "--preset", "smoke", "--set", f"data.source=folder:{root}",
                      "--set", "data.image_size=[28,28]", "--set", "data.stream=true", "--set", "train.epochs=1",
                      "--set", "train.batch_size=8"], cwd=tmp_path, backend="jax", hide_tensorflow=True)
    assert result.code == 0, result.err[-3000:]
    _, run = only_run(tmp_path, "medical-imaging")
    assert run.info.status == "FINISHED" and run.data.tags["backend"] == "jax"
    assert run.data.params["data.stream"] == "True" and 0.0 <= run.data.metrics["test_roc_auc"] <= 1.0
