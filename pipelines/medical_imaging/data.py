"""Medical images as train/val/test arrays: MedMNIST .npz, or a Kermany-style folder split by patient.

MedMNIST files carry official splits, used as they are. A folder may carry its own split
(`{train,val,test}/<class>/`), only train/test, or nothing; where validation or test has to be carved
out, whole patients are assigned to one split (ids from a CSV, the DICOM header or the file name),
and the number of patients found in more than one split is reported so a reader can see there is
no leakage. A folder may be streamed (`data.stream`, or automatically when its decoded images would take
over a quarter of the available memory): its splits then hold `ImageFiles` (paths decoded per batch,
folder_files.py) with the same files, labels, patients and split as the arrays. `load_data` turns them into
the pipeline's Splits and MedicalImagingMetadata; `fit_data` adds class weights and, with `model.mixup`,
mixup batches (mixup.py), and gives fit() batches decoded from the files when the folder is streamed.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deepsuite.common.data.cache import array_digest, cached_arrays
from deepsuite.common.data.image_files import ImageFiles, choose_streaming, listing_digest
from deepsuite.common.data.images import IMAGE_SUFFIXES, read_image
from deepsuite.common.errors import ConfigError, DataError
from deepsuite.common.pipeline import DatasetInfo, FitData, Split, Splits
from deepsuite.pipelines.medical_imaging import medmnist
from deepsuite.pipelines.medical_imaging.config import DataConfig, MedicalImagingConfig
from deepsuite.pipelines.medical_imaging.contract import MedicalImagingMetadata, PatientSplit
from deepsuite.pipelines.medical_imaging.dicom import DICOM_SUFFIXES, is_dicom, read_dicom
from deepsuite.pipelines.medical_imaging.folder_files import join, streamed_splits

SPLITS = ("train", "val", "test")
DEFAULT_FOLDER_SIZE = (64, 64)


@dataclass
class MedicalImages:
    name: str
    source: str
    images: dict[str, np.ndarray]            # split -> N x H x W x C uint8 (or ImageFiles when streamed)
    labels: dict[str, np.ndarray]            # split -> N int64
    class_names: list[str]
    split_note: str                          # how the splits were made, for the report
    patients: dict[str, np.ndarray] | None = None   # split -> patient id per image, when known
    leakage: dict = field(default_factory=dict)
    files_digest: str | None = None          # streamed folders: a digest of the file listing (image_files)

    @property
    def digest(self) -> str:
        return self.files_digest or array_digest(*(self.images[s] for s in SPLITS), *(self.labels[s] for s in SPLITS))


def load_data(config: MedicalImagingConfig) -> Splits:
    """The source's splits, subsampled when the config says so, with what predict needs to know."""
    data = config.data
    images = load(data, config.seed)
    names = images.class_names
    positive = positive_index(names, data.positive_class)
    rng = np.random.default_rng(config.seed)
    split = {}
    for name in SPLITS:
        x, y = images.images[name], images.labels[name]
        limit = {"train": data.max_train_samples, "val": data.max_val_samples, "test": data.max_test_samples}[name]
        if limit and limit < len(y):
            keep = np.sort(rng.permutation(len(y))[:limit])
            x, y = x[keep], y[keep]
        split[name] = Split(x, y)
    if len(np.unique(split["train"].y)) < 2:
        raise DataError(f"{images.source}: the training split has only one class; need at least 2")
    patients = PatientSplit(**{k: v for k, v in images.leakage.items() if k != "examples"}) if images.leakage else None
    metadata = MedicalImagingMetadata(class_names=names, input_shape=tuple(split["train"].x.shape[1:]),
                                      positive_index=positive, split=images.split_note, patient_split=patients)
    info = DatasetInfo(name=images.name, source=images.source, digest=images.digest)
    return Splits(split["train"], split["val"], split["test"], info, metadata=metadata)


def positive_index(class_names: list[str], positive: str | None) -> int | None:
    """Index of the disease class of a binary task (default 1); None for multi-class."""
    if len(class_names) != 2:
        return None
    if positive is None:
        return 1
    lowered = [n.lower() for n in class_names]
    if positive.lower() in lowered:
        return lowered.index(positive.lower())
    if positive in ("0", "1"):
        return int(positive)
    raise ConfigError(f"data.positive_class {positive!r} is not one of the classes {class_names}")


def input_example(splits: Splits) -> np.ndarray:
    """Synthetic images with the test images' shape and dtype (a diagonal ramp): the MLflow model's input
    example and signature, without putting a patient's scan into the tracking store."""
    count, height, width = min(4, len(splits.test)), *splits.test.x.shape[1:3]
    ramp = (np.add.outer(np.arange(height), np.arange(width)) * 255.0 / max(height + width - 2, 1))
    example = np.broadcast_to(ramp[None, :, :, None], (count, height, width, splits.test.x.shape[3]))
    return np.ascontiguousarray(example).astype(splits.test.x.dtype)


def fit_data(splits: Splits, config: MedicalImagingConfig) -> FitData:
    """One-hot targets (the loss smooths labels) with class weights; mixup batches when model.mixup > 0.

    A streamed folder gives batches decoded from its files (`ImageFileBatches`) in the order the arrays'
    batches have for this seed and epoch (`batches.ShuffledArrays`), so both train the same way."""
    n = len(splits.metadata.class_names)
    onehot = np.eye(n, dtype="float32")
    weights = class_weights(splits.train.y, n, config.model.class_weight)
    batch, workers = config.train.batch_size, config.data.stream_workers
    streamed = isinstance(splits.train.x, ImageFiles)
    validation = (splits.val.x, onehot[splits.val.y])
    if streamed:
        from deepsuite.common.image_batches import ImageFileBatches, default_workers  # Keras loads here

        workers = workers or default_workers()
        val = ImageFileBatches(splits.val.x, onehot[splits.val.y], batch, shuffle=False, workers=workers)
        validation = getattr(val, "dataset", val)  # tf.data on TensorFlow
    if config.model.mixup > 0:
        from deepsuite.pipelines.medical_imaging.mixup import MixupBatches  # a keras PyDataset: Keras loads here

        batches = MixupBatches(splits.train.x, splits.train.y, n, batch, config.model.mixup, weights, config.seed,
                               workers=workers if streamed else None)
        return FitData(batches, validation_data=validation)
    if streamed:
        train = ImageFileBatches(splits.train.x, onehot[splits.train.y], batch, config.seed, workers=workers)
        return FitData(train, validation_data=validation, class_weight=weights)
    return FitData(splits.train.x, onehot[splits.train.y], validation, class_weight=weights)


def class_weights(y: np.ndarray, num_classes: int, policy: str) -> dict[int, float] | None:
    """balanced: N / (K * n_c), so every class carries the same total weight; sqrt: a milder version."""
    if policy == "none":
        return None
    counts = np.bincount(y, minlength=num_classes).astype(float)
    weights = len(y) / (num_classes * np.maximum(counts, 1))
    if policy == "sqrt":
        weights = np.sqrt(weights)
    return {c: float(w) for c, w in enumerate(weights)}


# ------------------------------------------------------------------------------------------------
# Sources


def load(data: DataConfig, seed: int) -> MedicalImages:
    kind, _, arg = data.source.partition(":")
    if kind == "folder":
        if not arg:
            raise ConfigError("data.source=folder: needs a path, e.g. folder:/data/chest_xray")
        return load_folder(Path(arg).expanduser(), data, seed)
    if kind == "medmnist":
        target = arg or data.path
        if not target:
            raise ConfigError("data.source=medmnist: needs a file or a name, e.g. medmnist:/data/bloodmnist.npz")
    else:
        target = data.source
    if data.path and Path(data.path).expanduser().is_file() and kind != "medmnist":
        target = data.path  # an explicit file wins over the search
    search = [Path(data.path).expanduser()] if data.path and Path(data.path).expanduser().is_dir() else []
    loaded = medmnist.load(target, search_dirs=search, cache_dir=data.cache_dir, download=data.download)
    images, labels = loaded.images, loaded.labels
    if data.channels:
        images = {s: _channels(x, data.channels) for s, x in images.items()}
    note = f"official MedMNIST splits of {loaded.name} (train {len(labels['train'])}, val {len(labels['val'])}, " \
           f"test {len(labels['test'])})"
    return MedicalImages(loaded.name, loaded.source, images, labels, loaded.class_names, note)


def _channels(x: np.ndarray, channels: int) -> np.ndarray:
    if channels == 3 and x.shape[-1] == 1:
        return np.repeat(x, 3, axis=-1)
    if channels == 1 and x.shape[-1] == 3:
        return np.round(x @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)[..., None]
    return x


# ------------------------------------------------------------------------------------------------
# Folders


def list_classes(root: Path) -> dict[str, list[Path]]:
    """{class: files} under root/<class>/; images and DICOM files; fails on missing, empty or one class."""
    if not root.is_dir():
        raise DataError(f"image folder not found: {root} (expected one sub-folder per class, "
                        "e.g. NORMAL/ and PNEUMONIA/)")
    suffixes = IMAGE_SUFFIXES | DICOM_SUFFIXES
    classes = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
        if not files:
            raise DataError(f"class folder {folder} has no images ({', '.join(sorted(suffixes))})")
        classes[folder.name] = files
    if len(classes) < 2:
        found = ", ".join(classes) or "none"
        raise DataError(f"{root}: found {len(classes)} class folder(s) ({found}); need at least 2, "
                        "e.g. NORMAL/ and PNEUMONIA/")
    return classes


def read_medical_image(path: Path, size: tuple[int, int], channels: int) -> np.ndarray:
    """DICOM or PNG/JPEG -> centre-cropped square (as MedMNIST does) resized to `size`, uint8 HxWxC."""
    from PIL import Image

    square = centre_square(read_display_image(path, channels))
    pil = Image.fromarray(square[..., 0] if channels == 1 else square)
    resized = np.asarray(pil.resize((size[1], size[0]), Image.BILINEAR), dtype=np.uint8)
    return resized[..., None] if resized.ndim == 2 else resized


def read_display_image(path: Path, channels: int) -> np.ndarray:
    """The file at full resolution: DICOM (by suffix or 'DICM' magic) through pydicom, else PIL."""
    return read_dicom(path, channels) if is_dicom(path) else read_image(path, channels)


def centre_square(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return image[top: top + side, left: left + side]


def load_folder(root: Path, data: DataConfig, seed: int) -> MedicalImages:
    size = tuple(data.image_size or DEFAULT_FOLDER_SIZE)
    channels = data.channels or 1
    present = [s for s in SPLITS if (root / s).is_dir()]
    layout = {s: list_classes(root / s) for s in present} if "train" in present else {"all": list_classes(root)}
    names = sorted({name for classes in layout.values() for name in classes})
    for split, classes in layout.items():
        if split == "train" and len(classes) < len(names):
            raise DataError(f"{root / split}: has classes {sorted(classes)} but other splits have {names}")
    patient_of = _patient_lookup(root, data)
    count = sum(len(files) for classes in layout.values() for files in classes.values())
    if choose_streaming(data.stream, count * size[0] * size[1] * channels, f"folder {root}"):
        arrays = streamed_splits(root, layout, names, size, channels, read_medical_image, patient_of)
        images = _split_folder(root, arrays, names, data, seed)
        paths = np.concatenate([images.images[s].paths for s in SPLITS])
        images.files_digest = listing_digest(paths, np.concatenate([images.labels[s] for s in SPLITS]), root)
        return images

    def build() -> dict[str, np.ndarray]:
        arrays, bad = {}, []
        for split, classes in layout.items():
            xs, ys, ids = [], [], []
            for name, files in classes.items():
                for path in files:
                    try:
                        xs.append(read_medical_image(path, size, channels))
                    except DataError as exc:
                        bad.append(str(exc))
                        continue
                    ys.append(names.index(name))
                    ids.append(patient_of(path))
            if xs:
                arrays[f"{split}_x"], arrays[f"{split}_y"] = np.stack(xs), np.asarray(ys, np.int64)
                arrays[f"{split}_patient"] = np.asarray(ids, dtype=str)
        if bad:
            more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
            raise DataError(f"{len(bad)} unreadable image(s) in {root}: " + "; ".join(bad[:5]) + more)
        return arrays

    listing = sorted((str(p), p.stat().st_mtime, p.stat().st_size) for c in layout.values() for fs in c.values() for p in fs)
    key = {"root": str(root), "size": size, "channels": channels, "listing": listing, "v": 1,
           "patients": [data.patients_csv, data.patient_pattern]}
    arrays, _ = cached_arrays(f"medical-{root.name}", key, build, Path(data.cache_dir) if data.cache_dir else None)
    return _split_folder(root, arrays, names, data, seed)


def _patient_lookup(root: Path, data: DataConfig):
    """path -> patient id ('' when unknown): CSV first, then the DICOM PatientID, then the name pattern."""
    table: dict[str, str] = {}
    if data.patients_csv:
        csv_path = Path(data.patients_csv).expanduser()
        if not csv_path.is_file():
            raise DataError(f"data.patients_csv file not found: {csv_path}")
        with open(csv_path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or not {"path", "patient_id"} <= set(reader.fieldnames):
                raise DataError(f"{csv_path}: needs columns path,patient_id (found {reader.fieldnames})")
            for row in reader:
                table[row["path"]] = row["patient_id"]
    pattern = re.compile(data.patient_pattern) if data.patient_pattern else None

    def patient_of(path: Path, header=None) -> str:
        """`header`: the file's DICOM header if already read (the streamed folder's header pass)."""
        relative = str(path.relative_to(root))
        for key in (relative, path.name):
            if key in table:
                return table[key]
        if path.suffix.lower() in DICOM_SUFFIXES:
            import pydicom

            try:
                header = header if header is not None else pydicom.dcmread(path, stop_before_pixels=True)
                patient = str(header.get("PatientID", "") or "")
            except Exception:  # noqa: BLE001 - unreadable headers were reported by the image read
                patient = ""
            if patient:
                return patient
        match = pattern.search(path.name) if pattern else None
        return match.group(1) if match and match.groups() else (match.group(0) if match else "")

    return patient_of


def _split_folder(root: Path, arrays: dict[str, np.ndarray], names: list[str], data: DataConfig,
                  seed: int) -> MedicalImages:
    split_of = {s: (arrays[f"{s}_x"], arrays[f"{s}_y"], arrays[f"{s}_patient"]) for s in ("all", *SPLITS)
                if f"{s}_x" in arrays}
    notes = []
    if "all" in split_of:
        x, y, ids = split_of.pop("all")
        rest, test = group_split(y, ids, data.test_fraction, seed)
        split_of["test"] = (x[test], y[test], ids[test])
        split_of["train"] = (x[rest], y[rest], ids[rest])
        notes.append(f"no train/test folders: test is {data.test_fraction:.0%} of the patients")
    if "test" not in split_of:
        raise DataError(f"{root}: has train/ but no test/ folder; add test/<class>/ or use a flat <class>/ layout")
    val = split_of.get("val")
    if val is None or min(np.bincount(val[1], minlength=len(names))) < data.min_val_per_class:
        if val is not None:  # e.g. Kermany's 16-image val/: too small to choose a threshold on
            notes.append(f"val/ has fewer than {data.min_val_per_class} images of some class: merged into train")
            split_of["train"] = tuple(join(a, b) for a, b in zip(split_of["train"], val))
        x, y, ids = split_of["train"]
        keep, held = group_split(y, ids, data.val_fraction, seed)
        split_of["val"], split_of["train"] = (x[held], y[held], ids[held]), (x[keep], y[keep], ids[keep])
        notes.append(f"validation is {data.val_fraction:.0%} of the training patients")
    patients = {s: split_of[s][2] for s in SPLITS}
    leakage = patient_leakage(patients)
    if leakage["known"]:
        notes.append(f"patient-level split: {leakage['shared_patients']} patient(s) in more than one split "
                     f"(patients: train {leakage['train']}, val {leakage['val']}, test {leakage['test']})")
    else:
        notes.append("no patient ids found (set data.patients_csv or data.patient_pattern): split by image, "
                     "leakage between patients not checked")
    return MedicalImages(root.name, f"folder:{root}", {s: split_of[s][0] for s in SPLITS},
                         {s: split_of[s][1] for s in SPLITS}, names, "; ".join(notes), patients, leakage)


def group_split(y: np.ndarray, groups: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, held): about `fraction` of each class held out, whole groups at a time.

    Images without a group id ('') are their own group. A patient goes to the class of their first image,
    so the held-out share per class is approximate when patients have images of several classes.
    """
    rng = np.random.default_rng(seed)
    ids = np.asarray([g if g else f"__image_{i}" for i, g in enumerate(groups)])
    unique, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    held_groups = np.zeros(len(unique), dtype=bool)
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y[first] == label))
        sizes = np.bincount(inverse, minlength=len(unique))[members]
        goal = fraction * np.sum(y == label)
        take = members[: max(1, int(np.searchsorted(np.cumsum(sizes), goal) + 1))] if len(members) > 1 else members[:0]
        held_groups[take] = True
    held = held_groups[inverse]
    return rng.permutation(np.flatnonzero(~held)), rng.permutation(np.flatnonzero(held))


def patient_leakage(patients: dict[str, np.ndarray]) -> dict:
    """Patients per split and how many appear in more than one split (0 proves a clean split)."""
    sets = {s: {p for p in patients[s] if p} for s in SPLITS}
    known = all(len(sets[s]) > 0 for s in SPLITS)
    shared = (sets["train"] & sets["val"]) | (sets["train"] & sets["test"]) | (sets["val"] & sets["test"])
    return {"known": known, "shared_patients": len(shared), "examples": sorted(shared)[:5],
            **{s: len(sets[s]) for s in SPLITS}}
