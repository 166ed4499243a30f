"""Streamed TFDS sources (common/data/tfds_images.py): a dataset prepared by TFDS, read once into a uint8 memmap
in the cache and streamed from it, gives the arrays' pixels, labels, order and metrics; the stream/arrays choice
follows the memory available; the memmap cache is reused, and an interrupted pass is redone.

The dataset is a small TFDS builder defined here (real Fashion-MNIST images, no download), prepared into
tmp_path with `download_and_prepare`, so everything runs offline in this process (where the class is registered).
"""
from __future__ import annotations

import numpy as np
import pytest

from deepsuite.common.data import labeled_images
from deepsuite.common.data.idx import read_idx
from deepsuite.common.errors import DataError
from tests.support.data import needs_fashion_mnist

tfds = pytest.importorskip("tensorflow_datasets")
pytestmark = needs_fashion_mnist
FASHION = labeled_images.DEBIAN_FASHION_MNIST
NAME = "deepsuite_tiny_fashion"
TRAIN, TEST = 400, 120


def _fashion(rows: slice):
    x = read_idx(FASHION / "train-images-idx3-ubyte.gz")[rows]
    y = read_idx(FASHION / "train-labels-idx1-ubyte.gz")[rows]
    keep = y < 4                                   # four classes, so a short run learns something
    return x[keep], y[keep]


class DeepsuiteTinyFashion(tfds.core.GeneratorBasedBuilder):
    """Fashion-MNIST images of classes 0-3 as a TFDS dataset: train from the first training images, test from
    later ones; grey 28 x 28 PNGs, as TFDS stores images."""

    VERSION = tfds.core.Version("1.0.0")
    code_path = None   # defined in a test module: no checksums file beside it to look up (nothing is downloaded)

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self, features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(28, 28, 1)),
                "label": tfds.features.ClassLabel(names=labeled_images.FASHION_MNIST_CLASSES[:4])}),
            supervised_keys=("image", "label"))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(slice(0, 2000), TRAIN),
                "test": self._generate_examples(slice(30000, 31000), TEST)}

    def _generate_examples(self, rows, count):
        x, y = _fashion(rows)
        for i in range(count):
            yield i, {"image": x[i][..., None], "label": int(y[i])}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The tiny dataset prepared once for this file: its tfds data_dir."""
    data_dir = tmp_path_factory.mktemp("tfds")
    DeepsuiteTinyFashion(data_dir=str(data_dir)).download_and_prepare()
    return str(data_dir)


def load(prepared, cache, stream, **kwargs):
    return labeled_images.load(f"tfds:{NAME}", tfds_data_dir=prepared, download=False, cache_dir=str(cache),
                               stream=stream, **kwargs)


def test_streamed_splits_are_the_arrays(prepared, tmp_path):
    """The memmap holds the pixels the in-memory path gives (channels converted, resized with Pillow), in TFDS's
    order, with the same labels and class names; the splits are lazy rows, nothing loaded."""
    from deepsuite.common.data.image_files import ImageFiles
    from deepsuite.common.data.tfds_images import MemmapImages

    arrays = load(prepared, tmp_path / "c", stream=False, image_size=(20, 24), channels=3)
    rows = load(prepared, tmp_path / "c", stream=True, image_size=(20, 24), channels=3)
    assert not arrays.streamed and isinstance(arrays.train_x, np.ndarray)
    assert rows.streamed and isinstance(rows.train_x, MemmapImages) and isinstance(rows.test_x, ImageFiles)
    assert rows.train_x.shape == arrays.train_x.shape == (TRAIN, 20, 24, 3) and len(rows.test_x) == TEST
    assert rows.class_names == arrays.class_names == labeled_images.FASHION_MNIST_CLASSES[:4]
    np.testing.assert_array_equal(rows.train_y, arrays.train_y)
    np.testing.assert_array_equal(rows.test_y, arrays.test_y)
    np.testing.assert_array_equal(np.asarray(rows.train_x), arrays.train_x)
    np.testing.assert_array_equal(rows.test_x.read(), arrays.test_x)
    picked = rows.train_x[np.array([5, 1, 7])][1:]
    assert isinstance(picked, MemmapImages) and len(picked) == 2     # indexing selects rows, reads nothing
    np.testing.assert_array_equal(np.asarray(picked), arrays.train_x[[1, 7]])
    np.testing.assert_array_equal(rows.train_x[3], arrays.train_x[3])
    stored = load(prepared, tmp_path / "c", stream=True)              # as stored: 28 x 28 grey
    assert stored.train_x.shape == (TRAIN, 28, 28, 1) and stored.digest != rows.digest


def test_automatic_choice_follows_the_memory_budget(prepared, tmp_path, monkeypatch):
    """Unset data.stream: the metadata's examples x size x channels (520 x 28 x 28 x 1 = 0.4 MB) against a
    quarter of DEEPSUITE_MEMORY_BUDGET; data.stream=false is refused where loading would crowd the budget."""
    monkeypatch.setenv("DEEPSUITE_MEMORY_BUDGET", "1M")
    assert load(prepared, tmp_path / "c", stream=None).streamed
    monkeypatch.setenv("DEEPSUITE_MEMORY_BUDGET", "1G")
    assert not load(prepared, tmp_path / "c", stream=None).streamed
    monkeypatch.setenv("DEEPSUITE_MEMORY_BUDGET", "512K")
    with pytest.raises(DataError, match=f"TFDS dataset {NAME} needs .* GiB as arrays.*refusing.*data.stream=true"):
        load(prepared, tmp_path / "c", stream=False)


def test_memmap_cache_is_reused_and_an_interrupted_pass_redone(prepared, tmp_path, monkeypatch):
    import subprocess

    from deepsuite.common.data import tfds_images

    first = load(prepared, tmp_path / "c", stream=True)
    entry = first.train_x.file.parent
    stamp = {p.name: p.stat().st_mtime_ns for p in entry.iterdir()}
    real_pass = tfds_images._write_pass

    def no_pass(*args, **kwargs):
        raise AssertionError("the pass ran again")

    monkeypatch.setattr(tfds_images, "_write_pass", no_pass)
    again = load(prepared, tmp_path / "c", stream=True)                 # a second load: the same files, as written
    assert again.train_x.file == first.train_x.file and again.digest == first.digest
    assert {p.name: p.stat().st_mtime_ns for p in entry.iterdir()} == stamp

    # a pass killed midway leaves its temporary folder, never the entry: the next load removes it and redoes it
    gone = subprocess.Popen(["true"])
    gone.wait()
    left = entry.parent / f".{entry.name}.{gone.pid}.abc123.tmp"
    left.mkdir()
    (left / "images.npy").write_bytes(b"half a pass")
    for path in entry.iterdir():
        path.unlink()
    entry.rmdir()
    monkeypatch.setattr(tfds_images, "_write_pass", real_pass)
    redone = load(prepared, tmp_path / "c", stream=True)
    assert not left.exists() and redone.train_x.file.is_file()
    np.testing.assert_array_equal(np.asarray(redone.train_x), np.asarray(first.train_x))

    # an entry damaged since (a truncated images file) is rebuilt, not trusted
    images = redone.train_x.file
    expected = np.asarray(redone.train_x)
    del redone
    images.write_bytes(images.read_bytes()[:5000])
    rebuilt = load(prepared, tmp_path / "c", stream=True)
    np.testing.assert_array_equal(np.asarray(rebuilt.train_x), expected)

    # a pass that fails midway (here: interrupted at its third batch) leaves nothing that passes for finished
    calls = []

    conform = labeled_images.conform_images

    def interrupted(x, image_size, channels):
        calls.append(len(x))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return conform(x, image_size, channels)

    monkeypatch.setattr(labeled_images, "conform_images", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load(prepared, tmp_path / "c", stream=True, image_size=(14, 14))
    assert not [p for p in entry.parent.iterdir() if "train" in p.name and p.name != entry.name]
    monkeypatch.undo()
    assert load(prepared, tmp_path / "c", stream=True, image_size=(14, 14)).train_x.shape == (TRAIN, 14, 14, 1)


def test_batches_follow_the_arrays_order(prepared, tmp_path):
    """fit()'s streamed batches (ImageFileBatches over the memmap rows, as data.fit_data makes them) are those
    the in-memory arrays give for each (seed, epoch), also after the validation split's fancy indexing."""
    import keras

    from deepsuite.common.batches import epoch_seeded_arrays
    from deepsuite.common.image_batches import ImageFileBatches, prediction_input

    rows = load(prepared, tmp_path / "c", stream=True)
    keep, _ = labeled_images.stratified_split(rows.train_y, 0.1, seed=3)
    x, y = rows.train_x[keep], rows.train_y[keep]
    streamed = ImageFileBatches(x, y, batch_size=32, seed=7, workers=2)
    arrays = epoch_seeded_arrays(np.asarray(x), y, 32, 7)
    for epoch in (2, 0):
        streamed.set_epoch(epoch)
        arrays.set_epoch(epoch)
        theirs = list(arrays.dataset) if hasattr(arrays, "dataset") else [arrays[i] for i in range(len(arrays))]
        feed = streamed.dataset if keras.backend.backend() == "tensorflow" else streamed
        ours = [feed[i] for i in range(len(feed))] if feed is streamed else list(feed)
        assert len(ours) == len(theirs) == len(streamed)
        for (sx, sy), (ax, ay) in zip(ours, theirs):
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(sx), keras.ops.convert_to_numpy(ax))
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(sy), keras.ops.convert_to_numpy(ay))
    test_input, options = prediction_input(rows.test_x, 512, 2, streamed_batch=50)   # evaluation's batches
    assert options == {} and len(test_input) == 3


def test_streamed_rows_need_no_tensorflow(prepared, tmp_path):
    """Once the pass has written the memmap, its batches are NumPy reads: a JAX process with TensorFlow hidden
    reads them through ImageFileBatches (the order drawn from (seed, epoch), as the arrays are on JAX)."""
    import subprocess
    import sys

    from tests.support.cli import REPO

    rows = load(prepared, tmp_path / "c", stream=True)
    script = (
        "import tests.support.without_tensorflow, sys, numpy as np\n"
        "from deepsuite.common.data.tfds_images import MemmapImages\n"
        "from deepsuite.common.image_batches import ImageFileBatches\n"
        "x = MemmapImages(sys.argv[1])\n"
        "batches = ImageFileBatches(x[np.arange(0, len(x), 2)], None, 16, seed=5, workers=2)\n"
        "batches.set_epoch(1)\n"
        "(images,) = batches[2]\n"
        "assert 'tensorflow' not in sys.modules\n"
        "print(images.shape, int(images.astype(np.int64).sum()))\n")
    env = {"KERAS_BACKEND": "jax", "PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", script, str(rows.train_x.file)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    order = np.random.default_rng([5, 1]).permutation(TRAIN // 2)
    expected = np.asarray(rows.train_x)[::2][np.sort(order[32:48])]
    assert done.stdout.split("\n")[-2] == f"{expected.shape} {int(expected.astype(np.int64).sum())}"


def test_images_of_varying_size(prepared, tmp_path):
    """Images TFDS cannot batch are decoded one by one and resized by the same code; without data.image_size
    such a dataset is refused before anything is read."""
    from deepsuite.common.data.tfds_images import memmap_split
    from deepsuite.common.data.tfds_source import SupervisedLayout

    arrays = load(prepared, tmp_path / "c", stream=False, image_size=(16, 16))
    one_by_one = memmap_split(tfds.builder(NAME, data_dir=prepared), "test", TEST,
                              lambda x: labeled_images.conform_images(x, (16, 16), None), (16, 16, 1),
                              {"size": [16, 16], "one_by_one": True}, str(tmp_path / "c"), fixed_size=False)
    assert one_by_one.written
    np.testing.assert_array_equal(one_by_one.images.read(), arrays.test_x)
    np.testing.assert_array_equal(one_by_one.labels, arrays.test_y)
    with pytest.raises(DataError, match=r"images of varying size \(None, None, 3\); set data.image_size"):
        labeled_images._tfds_shape("photos", SupervisedLayout({"train": 9}, (None, None, 3), None), None, None)


def test_bad_images_are_named_together():
    """The pass checks each prepared image; every one that fails is named by split and row before training."""
    from deepsuite.common.data.tfds_images import _prepared

    def prepare(x):
        if np.any(x[:, 0, 0] == 255):
            raise ValueError("cannot decode")
        return x

    x = np.zeros((6, 4, 4, 1), dtype=np.uint8)
    x[[1, 4], 0, 0] = 255
    problems = []
    ready = _prepared(x, prepare, (4, 4, 1), "train", 100, problems)
    assert ready.shape == (6, 4, 4, 1)
    assert problems == ["train[101]: ValueError: cannot decode", "train[104]: ValueError: cannot decode"]
    problems.clear()
    _prepared(x, lambda x: x[:, :2], (4, 4, 1), "test", 0, problems)
    assert problems and "test[0:6]: images come out as (2, 4, 1), expected (4, 4, 1)" in problems[0]


@pytest.mark.slow
def test_streamed_run_matches_the_arrays_run(prepared, tmp_path):
    """The smoke preset on the TFDS dataset, streamed and as arrays: the same pixels in the same (seed, epoch)
    batch order train the same weights, so the test metrics agree to 1e-6; the streamed splits are lazy rows."""
    from deepsuite.app import registry
    from deepsuite.common import config as config_lib
    from deepsuite.common import runner
    from deepsuite.common.data.tfds_images import MemmapImages

    pipeline = registry.get("image-classification")
    metrics = {}
    for stream in (True, False):
        config = config_lib.resolve(pipeline.config_cls, pipeline.presets, "smoke", None, [
            f"data.source=tfds:{NAME}", f"data.tfds_data_dir={prepared}", "data.download=false",
            f"data.stream={stream}", "data.max_train_samples=null", "data.max_test_samples=null",
            "train.epochs=3", "train.batch_size=16", f"data.cache_dir={tmp_path / 'cache'}",
            "tracking.log_model=false"])
        if stream:
            splits = pipeline.load_data(config)
            assert all(isinstance(split.x, MemmapImages) for split in (splits.train, splits.val, splits.test))
            assert len(splits.train) + len(splits.val) == TRAIN and len(splits.test) == TEST
        result = runner.run(pipeline, config, store_dir=tmp_path / f"mlruns-{stream}", echo=lambda line: None)
        metrics[stream] = result.metrics
    assert set(metrics[True]) == set(metrics[False]) and "test_accuracy" in metrics[True]
    for name, value in metrics[False].items():
        assert metrics[True][name] == pytest.approx(value, abs=1e-6), name
    assert metrics[True]["test_accuracy"] > 0.5   # 4 classes: it learned something
