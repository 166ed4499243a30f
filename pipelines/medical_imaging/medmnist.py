"""MedMNIST 2D datasets (`.npz` with official train/val/test splits): validate, locate, download.

A MedMNIST file holds `{train,val,test}_{images,labels}`; images are N x H x W (grey) or N x H x W x 3,
labels N x 1 integers. Named sets are looked for in an explicit path, the suite's data cache and the
`medmnist` package's own folder (~/.medmnist), then downloaded from MedMNIST's Zenodo record when the
internet is there. When nothing works, the error says which file to put where.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepsuite.common.data.cache import array_digest, cache_root
from deepsuite.common.data.sources import Source, first_available
from deepsuite.common.errors import DataError

ZENODO_RECORD = "https://zenodo.org/records/10519652"   # MedMNIST v2/v3 (MedMNIST+), CC BY 4.0
SPLITS = ("train", "val", "test")
REQUIRED_KEYS = tuple(f"{split}_{part}" for split in SPLITS for part in ("images", "labels"))
# Class names of the 2D sets, as in medmnist.INFO; other sets get "class 0", "class 1", ...
CLASS_NAMES = {
    "pneumoniamnist": ["normal", "pneumonia"],
    "breastmnist": ["malignant", "normal, benign"],
    "bloodmnist": ["basophil", "eosinophil", "erythroblast", "immature granulocytes", "lymphocyte",
                   "monocyte", "neutrophil", "platelet"],
    "octmnist": ["choroidal neovascularization", "diabetic macular edema", "drusen", "normal"],
    "dermamnist": ["actinic keratoses and intraepithelial carcinoma", "basal cell carcinoma",
                   "benign keratosis-like lesions", "dermatofibroma", "melanoma", "melanocytic nevi",
                   "vascular lesions"],
    "pathmnist": ["adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle",
                  "normal colon mucosa", "cancer-associated stroma", "colorectal adenocarcinoma epithelium"],
    "retinamnist": ["0", "1", "2", "3", "4"],
    "tissuemnist": ["Collecting Duct, Connecting Tubule", "Distal Convoluted Tubule", "Glomerular endothelial cells",
                    "Interstitial endothelial cells", "Leukocytes", "Podocytes", "Proximal Tubule Segments",
                    "Thick Ascending Limb"],
    "organamnist": ["bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right", "liver",
                    "lung-left", "lung-right", "pancreas", "spleen"],
}
CLASS_NAMES["organcmnist"] = CLASS_NAMES["organsmnist"] = CLASS_NAMES["organamnist"]
# MD5 of the official files, where verified; downloads of other sets are checked by content only.
MD5 = {"pneumoniamnist": "28209eda62fecd6e6a2d98b1501bb15f"}
SIZES = ("", "_64", "_128", "_224")


@dataclass
class MedMnist:
    """Official splits as uint8 N x H x W x C images and int64 labels."""

    name: str
    source: str
    images: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    class_names: list[str]

    @property
    def digest(self) -> str:
        return array_digest(*(self.images[s] for s in SPLITS), *(self.labels[s] for s in SPLITS))


def is_named(name: str) -> bool:
    """True for a MedMNIST 2D flag such as 'pneumoniamnist' or 'bloodmnist_64'."""
    base = name
    for suffix in SIZES[1:]:
        base = base.removesuffix(suffix)
    return base in CLASS_NAMES


def base_name(flag: str) -> str:
    for suffix in SIZES[1:]:
        if flag.endswith(suffix):
            return flag[: -len(suffix)]
    return flag


def download_url(flag: str) -> str:
    return f"{ZENODO_RECORD}/files/{flag}.npz?download=1"


def load(flag_or_path: str, search_dirs: list[Path] = (), cache_dir: str | None = None,
         download: bool = True) -> MedMnist:
    """A named MedMNIST set (looked up, else downloaded) or an explicit .npz path."""
    path = Path(flag_or_path).expanduser()
    if path.suffix == ".npz" or path.exists() or "/" in flag_or_path:
        if not path.is_file():
            raise DataError(f"MedMNIST file not found: {path} (expected a .npz with keys {', '.join(REQUIRED_KEYS)})")
        name = path.stem
        return from_arrays(read_npz(path), name, f"file:{path}")
    flag = flag_or_path.lower()
    if not is_named(flag):
        raise DataError(f"unknown MedMNIST dataset {flag_or_path!r}; use one of {', '.join(sorted(CLASS_NAMES))} "
                        "(optionally with _64, _128 or _224), or medmnist:/path/to/file.npz")
    target = cache_root(cache_dir) / "medmnist" / f"{flag}.npz"
    folders = [*(Path(d).expanduser() for d in search_dirs), target.parent, Path.home() / ".medmnist"]
    candidates = [_local(folder / f"{flag}.npz") for folder in dict.fromkeys(folders)]
    if download:
        candidates.append(_zenodo(flag, target))
    try:
        arrays, used = first_available(flag, candidates)
    except DataError as exc:
        raise DataError(f"{exc}\nto use it offline, download {download_url(flag)} on a machine with the internet "
                        f"and put it at {target} (or pass --set data.source=medmnist:/path/to/{flag}.npz)") from None
    return from_arrays(arrays, flag, used.name)


def _local(path: Path) -> Source:
    def read() -> dict[str, np.ndarray]:
        if not path.is_file():
            raise DataError("no such file")
        return read_npz(path)

    return Source(f"file:{path}", read)


def _zenodo(flag: str, target: Path) -> Source:
    def fetch() -> dict[str, np.ndarray]:
        url = download_url(flag)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".npz.part")
        try:
            digest = hashlib.md5()
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
            expected = MD5.get(flag)
            if expected and digest.hexdigest() != expected:
                raise DataError(f"download of {url} has MD5 {digest.hexdigest()}, expected {expected}")
            arrays = read_npz(Path(tmp))
            os.replace(tmp, target)
            return arrays
        except OSError as exc:  # urllib's URLError/HTTPError/timeouts are OSErrors
            raise DataError(f"download of {url} failed ({type(exc).__name__}: {str(exc)[:160]})") from None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    return Source(f"zenodo:{flag}", fetch, hint="needs the internet")


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """The six arrays of a MedMNIST file, checked for presence, shapes and integer labels."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            present = set(stored.files)
            missing = [key for key in REQUIRED_KEYS if key not in present]
            if missing:
                raise DataError(f"{path}: missing key(s) {', '.join(missing)} (found {', '.join(sorted(present)) or 'none'}; "
                                f"a MedMNIST .npz has {', '.join(REQUIRED_KEYS)})")
            arrays = {key: stored[key] for key in REQUIRED_KEYS}
    except DataError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({str(exc)[:160]})") from None
    for split in SPLITS:
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (1, 3)):
            raise DataError(f"{path}: {split}_images has shape {images.shape}; expected N x H x W (grey) or "
                            "N x H x W x 3 (RGB) - 3D MedMNIST volumes are not supported")
        if labels.ndim == 2 and labels.shape[1] > 1:
            raise DataError(f"{path}: {split}_labels has shape {labels.shape} (multi-label, e.g. ChestMNIST); "
                            "this pipeline needs one integer label per image")
        if len(labels) != len(images):
            raise DataError(f"{path}: {split}_labels has {len(labels)} entries but {split}_images has {len(images)}")
        if len(images) == 0:
            raise DataError(f"{path}: {split}_images is empty")
        if not (np.issubdtype(labels.dtype, np.integer) or np.all(np.mod(labels, 1) == 0)):
            raise DataError(f"{path}: {split}_labels must be integers, got {labels.dtype}")
    return arrays


def from_arrays(arrays: dict[str, np.ndarray], name: str, source: str) -> MedMnist:
    """Shape images to N x H x W x C uint8 and check every label against the class list."""
    images, labels = {}, {}
    for split in SPLITS:
        x = arrays[f"{split}_images"]
        x = x[..., None] if x.ndim == 3 else x
        if x.dtype != np.uint8:
            if x.min() < 0 or x.max() > 255:
                raise DataError(f"{name}: {split}_images values span {x.min()}..{x.max()}; expected 0..255 pixels")
            x = np.round(x).astype(np.uint8)
        images[split] = np.ascontiguousarray(x)
        labels[split] = np.asarray(arrays[f"{split}_labels"]).reshape(-1).astype(np.int64)
    known = CLASS_NAMES.get(base_name(name))
    num_classes = len(known) if known else int(labels["train"].max()) + 1
    for split in SPLITS:
        y = labels[split]
        bad = np.flatnonzero((y < 0) | (y >= num_classes))
        if bad.size:
            raise DataError(f"{name}: {split}_labels has label(s) {sorted(set(y[bad].tolist()))[:5]} out of range "
                            f"0..{num_classes - 1} (first at index {bad[0]})")
    present = np.unique(labels["train"])
    if present.size < 2:
        raise DataError(f"{name}: train_labels has only class {present.tolist()}; need at least 2 classes")
    names = known or [f"class {i}" for i in range(num_classes)]
    return MedMnist(name, source, images, labels, names)
