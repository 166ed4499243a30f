"""Data sources: Debian Fashion-MNIST, fallback order, caching, class folders and their errors."""
import gzip
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepsuite.common.data import labeled_images
from deepsuite.common.data.cache import cached_arrays
from deepsuite.common.data.idx import read_idx
from deepsuite.common.data.sources import Source, first_available
from deepsuite.common.errors import DataError

DEBIAN = labeled_images.DEBIAN_FASHION_MNIST


@pytest.mark.skipif(not DEBIAN.exists(), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_debian_files():
    data = labeled_images.load("fashion_mnist")
    assert data.train_x.shape == (60000, 28, 28, 1) and data.test_x.shape == (10000, 28, 28, 1)
    assert data.train_x.dtype == np.uint8 and set(np.unique(data.train_y)) == set(range(10))
    assert data.source.startswith("debian:") and data.class_names[0] == "T-shirt/top"


def test_first_available_falls_back_and_reports_every_failure():
    def missing():
        raise DataError("missing /nowhere/file.gz")

    value, used = first_available("demo", [Source("a", missing, hint="apt-get install a"), Source("b", lambda: 42)])
    assert value == 42 and used.name == "b"
    with pytest.raises(DataError) as err:
        first_available("demo", [Source("a", missing, hint="apt-get install a"), Source("c", missing)])
    assert "[1] a: missing /nowhere/file.gz (apt-get install a); [2] c: missing" in str(err.value)
    assert "\n" not in str(err.value)  # the CLI prints errors as one line


def test_cache_builds_once(tmp_path):
    calls = []

    def build():
        calls.append(1)
        return {"x": np.arange(5)}

    first, hit1 = cached_arrays("demo", {"k": 1}, build, tmp_path)
    second, hit2 = cached_arrays("demo", {"k": 1}, build, tmp_path)
    assert (hit1, hit2) == (False, True) and len(calls) == 1
    np.testing.assert_array_equal(first["x"], second["x"])



@pytest.mark.parametrize("damage", ["empty", "truncated", "not a zip"])
def test_a_damaged_cache_entry_is_rebuilt_and_said(tmp_path, damage, capsys):
    calls = []

    def build():
        calls.append(1)
        return {"x": np.arange(1000), "y": np.ones((50, 50))}

    cached_arrays("demo", {"k": 1}, build, tmp_path)
    (entry,) = (tmp_path / "arrays").glob("demo-*.npz")
    data = entry.read_bytes()
    entry.write_bytes({"empty": b"", "truncated": data[: len(data) // 2], "not a zip": b"hello" * 100}[damage])
    capsys.readouterr()
    again, hit = cached_arrays("demo", {"k": 1}, build, tmp_path)
    assert hit is False and len(calls) == 2 and f"rebuilding damaged cache entry {entry}" in capsys.readouterr().err
    np.testing.assert_array_equal(again["x"], np.arange(1000))
    third, hit = cached_arrays("demo", {"k": 1}, build, tmp_path)  # the rebuilt entry is whole again
    assert hit is True and len(calls) == 2 and third["y"].shape == (50, 50)
    assert [p.name for p in (tmp_path / "arrays").iterdir()] == [entry.name]  # no temporary file left

def test_truncated_idx_file_is_reported(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(bytes([0, 0, 8, 3]) + (10).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + b"\0" * 100)
    with pytest.raises(DataError, match="truncated IDX"):
        read_idx(path)


def _write_images(folder: Path, count: int, colour: int) -> None:
    folder.mkdir(parents=True)
    for i in range(count):
        Image.fromarray(np.full((40, 30, 3), colour + i, np.uint8)).save(folder / f"{i}.png")


def test_class_folders_load_resized(tmp_path):
    _write_images(tmp_path / "imgs" / "cats", 6, 10)
    _write_images(tmp_path / "imgs" / "dogs", 4, 200)
    data = labeled_images.load(f"folder:{tmp_path / 'imgs'}", image_size=(16, 16), cache_dir=str(tmp_path / "c"))
    assert data.class_names == ["cats", "dogs"]
    assert data.train_x.shape[1:] == (16, 16, 3) and len(data.train_x) + len(data.test_x) == 10


def test_empty_class_folder_is_named(tmp_path):
    _write_images(tmp_path / "imgs" / "cats", 3, 10)
    (tmp_path / "imgs" / "dogs").mkdir()
    with pytest.raises(DataError, match=r"class folder .*dogs has no images"):
        labeled_images.load(f"folder:{tmp_path / 'imgs'}", cache_dir=str(tmp_path / "c"))


def test_unreadable_image_is_named(tmp_path):
    _write_images(tmp_path / "imgs" / "cats", 3, 10)
    _write_images(tmp_path / "imgs" / "dogs", 3, 200)
    (tmp_path / "imgs" / "dogs" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match=r"1 unreadable image.*broken.png"):
        labeled_images.load(f"folder:{tmp_path / 'imgs'}", cache_dir=str(tmp_path / "c"))


def test_missing_folder_and_unknown_source(tmp_path):
    with pytest.raises(DataError, match="image folder not found"):
        labeled_images.load(f"folder:{tmp_path / 'nope'}", cache_dir=str(tmp_path / "c"))
    with pytest.raises(DataError, match="unknown image data source 'fashon_mnist'"):
        labeled_images.load("fashon_mnist")


def test_tfds_without_download_fails_clearly(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(DataError, match="dataset 'mnist' from tfds:mnist: TFDS dataset 'mnist' is not prepared"):
        labeled_images.load("tfds:mnist", tfds_data_dir=str(tmp_path / "tfds"), download=False,
                            cache_dir=str(tmp_path / "c"))
