"""Medical-imaging inputs and metrics without training: MedMNIST files, DICOM, patient splits, thresholds."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from pydicom.data import get_testdata_file

from deepsuite.common import metrics_binary as mb
from deepsuite.pipelines.medical_imaging import medmnist
from deepsuite.pipelines.medical_imaging.dicom import read_dicom
from deepsuite.common.errors import DataError
from deepsuite.pipelines.medical_imaging.config import DataConfig
from deepsuite.pipelines.medical_imaging.data import group_split, load, load_folder
from tests.support.data import PNEUMONIA, needs_pneumonia



# -- metrics ----------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 6)), min_size=2, max_size=40))
def test_roc_auc_is_the_probability_a_positive_outranks_a_negative(pairs):
    y = np.array([p[0] for p in pairs])
    s = np.array([p[1] for p in pairs], dtype=float) / 6  # coarse scores: many ties
    pos, neg = s[y == 1], s[y == 0]
    if not len(pos) or not len(neg):
        assert np.isnan(mb.roc_auc(y, s))
        return
    brute = np.mean([(a > b) + 0.5 * (a == b) for a in pos for b in neg])
    assert mb.roc_auc(y, s) == pytest.approx(brute)
    fpr, tpr, _ = mb.roc_curve(y, s)
    assert np.trapezoid(tpr, fpr) == pytest.approx(brute)  # the curve and the rank statistic agree


def test_threshold_policies_on_validation():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9])
    youden = mb.choose_threshold(y, s, "youden")
    at = mb.metrics_at(y, s, youden)
    assert at["sensitivity"] + at["specificity"] - 1 == pytest.approx(0.75)
    sens = mb.choose_threshold(y, s, "sensitivity", 1.0)
    assert mb.metrics_at(y, s, sens)["sensitivity"] == 1.0 and 0.3 < sens <= 0.4  # most specific with all positives
    spec = mb.choose_threshold(y, s, "specificity", 1.0)
    assert mb.metrics_at(y, s, spec)["specificity"] == 1.0 and 0.6 < spec <= 0.7
    assert mb.choose_threshold(y, s, "fixed", 0.5) == 0.5
    m = mb.metrics_at(y, s, 0.5)
    assert (m["tp"], m["fn"], m["tn"], m["fp"]) == (3, 1, 3, 1) and m["precision"] == 0.75 and m["f1"] == 0.75
    cal = mb.calibration_bins(np.array([0, 1]), np.array([0.05, 0.95]), bins=10)
    assert cal["ece"] == pytest.approx(0.05) and cal["count"].sum() == 2


# -- MedMNIST files ---------------------------------------------------------------------------------


def _medmnist_arrays(n=12, classes=2, seed=0):
    rng = np.random.default_rng(seed)
    return {f"{s}_{p}": (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8) if p == "images"
                         else (np.arange(n) % classes).reshape(-1, 1).astype(np.uint8))
            for s in medmnist.SPLITS for p in ("images", "labels")}


@needs_pneumonia
def test_pneumoniamnist_official_splits():
    data = load(DataConfig(source=f"medmnist:{PNEUMONIA}"), seed=0)
    assert {s: len(y) for s, y in data.labels.items()} == {"train": 4708, "val": 524, "test": 624}
    assert data.images["train"].shape[1:] == (28, 28, 1) and data.class_names == ["normal", "pneumonia"]
    assert np.bincount(data.labels["train"]).tolist() == [1214, 3494]


def test_npz_missing_key_names_file_and_key(tmp_path):
    arrays = _medmnist_arrays()
    del arrays["val_labels"]
    path = tmp_path / "broken.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=r"broken\.npz: missing key\(s\) val_labels"):
        medmnist.load(str(path))


def test_labels_out_of_range_name_the_key(tmp_path):
    arrays = _medmnist_arrays()
    arrays["test_labels"][3] = 7
    path = tmp_path / "pneumoniamnist.npz"  # a known set: 2 classes, so 7 is out of range
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=r"test_labels has label\(s\) \[7\] out of range 0\.\.1"):
        medmnist.load(str(path))


def test_one_class_npz_and_multilabel_npz_are_refused(tmp_path):
    one = _medmnist_arrays(classes=1)
    np.savez(tmp_path / "one.npz", **one)
    with pytest.raises(DataError, match="train_labels has only class"):
        medmnist.load(str(tmp_path / "one.npz"))
    multi = _medmnist_arrays()
    multi["train_labels"] = np.zeros((12, 14), np.uint8)
    np.savez(tmp_path / "chest.npz", **multi)
    with pytest.raises(DataError, match="multi-label"):
        medmnist.load(str(tmp_path / "chest.npz"))


def test_multiclass_rgb_npz_keeps_channels(tmp_path):
    arrays = _medmnist_arrays(n=16, classes=8)
    for split in medmnist.SPLITS:
        arrays[f"{split}_images"] = np.repeat(arrays[f"{split}_images"][..., None], 3, axis=-1)
    np.savez(tmp_path / "bloodmnist.npz", **arrays)
    data = load(DataConfig(source=f"medmnist:{tmp_path / 'bloodmnist.npz'}"), seed=0)
    assert data.images["val"].shape[1:] == (28, 28, 3) and data.class_names[0] == "basophil"


def test_offline_named_set_says_which_file_to_put_where(tmp_path):
    with pytest.raises(DataError) as err:
        medmnist.load("pneumoniamnist", cache_dir=str(tmp_path), download=False)
    message = str(err.value)
    assert "https://zenodo.org/records/10519652/files/pneumoniamnist.npz" in message
    assert str(tmp_path / "medmnist" / "pneumoniamnist.npz") in message


def test_named_set_is_found_in_data_path(tmp_path):
    np.savez(tmp_path / "breastmnist.npz", **_medmnist_arrays())
    data = load(DataConfig(source="breastmnist", path=str(tmp_path), download=False), seed=0)
    assert data.source == f"file:{tmp_path / 'breastmnist.npz'}" and data.class_names == ["malignant", "normal, benign"]


# -- DICOM --------------------------------------------------------------------------------------------


def test_dicom_modality_lut_windowing_and_monochrome1(tmp_path):
    ct = read_dicom(get_testdata_file("CT_small.dcm"))
    assert ct.shape == (128, 128, 1) and ct.dtype == np.uint8 and ct.min() == 0 and ct.max() == 255
    dataset = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    dataset.PhotometricInterpretation = "MONOCHROME1"
    dataset.save_as(tmp_path / "inverted.dcm")
    assert np.array_equal(read_dicom(tmp_path / "inverted.dcm"), 255 - ct)
    dataset = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    dataset.WindowCenter, dataset.WindowWidth = 40, 80   # a soft-tissue window in Hounsfield units
    dataset.save_as(tmp_path / "windowed.dcm")
    windowed = read_dicom(tmp_path / "windowed.dcm")
    hu = pydicom.pixels.apply_modality_lut(dataset.pixel_array, dataset)
    assert np.all(windowed[..., 0][hu < 0] == 0) and np.all(windowed[..., 0][hu > 80] == 255)


@pytest.mark.parametrize("name, message", [
    ("rtplan.dcm", "DICOM without an image (modality/SOP class RTPLAN)"),
    ("MR_truncated.dcm", "cannot decode DICOM pixel data"),
    ("README.txt", "not a DICOM file"),
])
def test_bad_dicom_names_the_file(name, message):
    path = get_testdata_file(name)
    with pytest.raises(DataError) as err:
        read_dicom(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)


# -- folders and patient splits --------------------------------------------------------------------


def _kermany_folder(root, n_normal=12, n_pneumonia=18, val=2):
    """A Kermany-style tree of real PneumoniaMNIST images named like the original files."""
    with np.load(PNEUMONIA) as stored:
        images, labels = stored["train_images"], stored["train_labels"].ravel()
    normal, sick = iter(np.flatnonzero(labels == 0)), iter(np.flatnonzero(labels == 1))
    for split, count in (("train", 1.0), ("val", None), ("test", 0.5)):
        for name, pool, n, fmt in (("NORMAL", normal, n_normal, "IM-{p:04d}-{k:04d}.jpeg"),
                                   ("PNEUMONIA", sick, n_pneumonia, "person{p}_bacteria_{k}.jpeg")):
            folder = root / split / name
            folder.mkdir(parents=True)
            total = val if count is None else int(n * count)
            for k in range(total):
                patient = {"train": 100, "val": 300, "test": 500}[split] + k // 2  # two images per patient
                Image.fromarray(images[next(pool)]).save(folder / fmt.format(p=patient, k=k))
    return root


@needs_pneumonia
def test_kermany_folder_splits_validation_by_patient(tmp_path):
    root = _kermany_folder(tmp_path / "chest_xray")
    data = load_folder(root, DataConfig(image_size=(28, 28), val_fraction=0.25), seed=3)
    assert data.class_names == ["NORMAL", "PNEUMONIA"]
    assert data.leakage["known"] and data.leakage["shared_patients"] == 0
    assert "merged into train" in data.split_note and "0 patient(s) in more than one split" in data.split_note
    assert len(data.labels["val"]) >= 4 and set(data.labels["val"]) == {0, 1}
    train, val = set(data.patients["train"]), set(data.patients["val"])
    assert train and val and not train & val
    assert data.images["train"].shape[1:] == (28, 28, 1)


def test_folder_with_one_class_is_refused(tmp_path):
    (tmp_path / "xrays" / "NORMAL").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "xrays" / "NORMAL" / "a.png")
    with pytest.raises(DataError, match=r"xrays: found 1 class folder\(s\) \(NORMAL\); need at least 2"):
        load_folder(tmp_path / "xrays", DataConfig(), seed=0)


def test_corrupt_dicom_in_a_folder_is_named(tmp_path):
    for name in ("NORMAL", "PNEUMONIA"):
        (tmp_path / "x" / name).mkdir(parents=True)
        Image.fromarray(np.full((8, 8), 9, np.uint8)).save(tmp_path / "x" / name / "ok.png")
    (tmp_path / "x" / "PNEUMONIA" / "scan.dcm").write_bytes(b"\x00" * 50)
    with pytest.raises(DataError, match=r"scan\.dcm: not a DICOM file"):
        load_folder(tmp_path / "x", DataConfig(), seed=0)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 15)), min_size=4, max_size=60), st.integers(0, 9))
def test_group_split_never_puts_a_patient_on_both_sides(rows, seed):
    y = np.array([r[0] for r in rows])
    groups = np.array([f"p{r[1]}" for r in rows])
    keep, held = group_split(y, groups, 0.3, seed)
    assert sorted(np.r_[keep, held].tolist()) == list(range(len(rows)))
    assert not set(groups[keep]) & set(groups[held])
