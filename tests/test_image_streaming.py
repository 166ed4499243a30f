"""Streamed image folders (common/data/image_files.py, common/image_batches.py): the same pixels, labels, split
and batch order as the in-memory arrays, a bad file named before training, the stream/arrays decision, and a
run that streams giving the test metrics of the run that loads arrays."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from deepsuite.common.data import labeled_images
from deepsuite.common.data.idx import read_idx
from deepsuite.common.data.image_files import ImageFiles, choose_streaming
from deepsuite.common.errors import DataError
from tests.support.data import needs_fashion_mnist

pytestmark = needs_fashion_mnist
FASHION = labeled_images.DEBIAN_FASHION_MNIST


def fashion_folder(root, per_class: int, classes: int = 4, offset: int = 0):
    """root/<class>/<i>.png: the first `per_class` Fashion-MNIST training images of each of `classes` classes,
    half of them saved as JPEG (so both decoders are exercised)."""
    x = read_idx(FASHION / "train-images-idx3-ubyte.gz")
    y = read_idx(FASHION / "train-labels-idx1-ubyte.gz")
    for label in range(classes):
        folder = root / f"class_{label}"
        folder.mkdir(parents=True)
        for i, row in enumerate(np.flatnonzero(y == label)[offset:offset + per_class]):
            Image.fromarray(x[row]).save(folder / (f"{i:04d}.png" if i % 2 else f"{i:04d}.jpg"), quality=95)
    return root


def test_streamed_folder_is_the_arrays(tmp_path):
    root = fashion_folder(tmp_path / "imgs", per_class=15)
    arrays = labeled_images.load(f"folder:{root}", image_size=(20, 24), channels=3,
                                 cache_dir=str(tmp_path / "c"), stream=False)
    files = labeled_images.load(f"folder:{root}", image_size=(20, 24), channels=3, stream=True)
    assert isinstance(files.train_x, ImageFiles) and files.streamed and not arrays.streamed
    assert files.train_x.shape == arrays.train_x.shape and files.class_names == arrays.class_names
    np.testing.assert_array_equal(files.train_y, arrays.train_y)
    np.testing.assert_array_equal(files.test_y, arrays.test_y)
    np.testing.assert_array_equal(np.asarray(files.train_x), arrays.train_x)   # same reader, same pixels
    np.testing.assert_array_equal(np.asarray(files.test_x), arrays.test_x)
    picked = files.train_x[np.array([5, 1, 7])]
    assert isinstance(picked, ImageFiles)                          # indexing selects files, reads nothing
    np.testing.assert_array_equal(np.asarray(picked), arrays.train_x[[5, 1, 7]])
    np.testing.assert_array_equal(files.train_x[3], arrays.train_x[3])


def test_bad_file_is_named_before_training(tmp_path):
    root = fashion_folder(tmp_path / "imgs", per_class=6, classes=2)
    (root / "class_1" / "broken.png").write_bytes(b"this is not a PNG")
    with pytest.raises(DataError, match=r"1 unreadable image.*broken\.png"):
        labeled_images.load(f"folder:{root}", image_size=(16, 16), stream=True)


def test_stream_decision():
    gib = 2**30
    assert choose_streaming(None, 3 * gib, "x", available=10 * gib)          # over 25%: stream
    assert not choose_streaming(None, 2 * gib, "x", available=10 * gib)
    assert choose_streaming(True, 1, "x", available=10 * gib)
    assert not choose_streaming(False, 3 * gib, "x", available=10 * gib)      # warned, loaded as asked
    with pytest.raises(DataError, match=r"5\.00 GiB as arrays.*refusing.*data\.stream=true"):
        choose_streaming(False, 5 * gib, "x", available=10 * gib)             # its peak is about twice that


def test_memory_budget_caps_what_is_available(monkeypatch):
    from deepsuite.common.data.image_files import available_memory

    monkeypatch.setenv("DEEPSUITE_MEMORY_BUDGET", "512M")
    assert available_memory() <= 512 * 2**20
    monkeypatch.setenv("DEEPSUITE_MEMORY_BUDGET", "lots")
    with pytest.raises(DataError, match="DEEPSUITE_MEMORY_BUDGET"):
        available_memory()


def test_batches_follow_the_arrays_order(tmp_path):
    """Each epoch's batches are those the in-memory path draws for this backend, from (seed, epoch) only."""
    import keras

    from deepsuite.common.batches import epoch_seeded_arrays
    from deepsuite.common.image_batches import ImageFileBatches

    root = fashion_folder(tmp_path / "imgs", per_class=11, classes=3)
    files = labeled_images.load(f"folder:{root}", image_size=(12, 12), channels=1, stream=True)
    images = np.asarray(files.train_x)
    streamed = ImageFileBatches(files.train_x, files.train_y, batch_size=8, seed=7, workers=2)
    arrays = epoch_seeded_arrays(images, files.train_y, 8, 7)
    for epoch in (3, 0, 1):
        streamed.set_epoch(epoch)
        arrays.set_epoch(epoch)
        ours = [streamed[i] for i in range(len(streamed))]
        theirs = list(arrays.dataset) if hasattr(arrays, "dataset") else [arrays[i] for i in range(len(arrays))]
        assert len(ours) == len(theirs) == 4
        for (x, y), (ax, ay) in zip(ours, theirs):
            np.testing.assert_array_equal(x, keras.ops.convert_to_numpy(ax))
            np.testing.assert_array_equal(y, keras.ops.convert_to_numpy(ay))
        if keras.backend.backend() == "tensorflow":   # the tf.data form fit() is given: the same batches
            for (x, y), (tx, ty) in zip(ours, streamed.dataset):
                np.testing.assert_array_equal(x, tx.numpy())
                np.testing.assert_array_equal(y, ty.numpy())
    streamed.set_epoch(1)
    again = ImageFileBatches(files.train_x, files.train_y, batch_size=8, seed=7, workers=2)
    again.set_epoch(1)
    np.testing.assert_array_equal(streamed[2][1], again[2][1])


@pytest.mark.slow
def test_streamed_run_matches_the_arrays_run(tmp_path):
    """The smoke preset on a folder of Fashion-MNIST PNG/JPEGs, streamed and as arrays: the same files, the same
    split, the same pixels and the same (seed, epoch) batch order, so with deterministic ops the two runs
    train the same weights; the test metrics are compared to 1e-6 (float summation order is the only
    freedom left, and it is fixed by data.deterministic)."""
    from deepsuite.app import registry
    from deepsuite.common import config as config_lib
    from deepsuite.common import runner

    root = fashion_folder(tmp_path / "imgs", per_class=80)
    pipeline = registry.get("image-classification")
    metrics = {}
    for stream in (True, False):
        config = config_lib.resolve(pipeline.config_cls, pipeline.presets, "smoke", None, [
            f"data.source=folder:{root}", "data.image_size=[28,28]", "data.channels=1", f"data.stream={stream}",
            "data.max_train_samples=null", "data.max_test_samples=null", "train.epochs=3", "train.batch_size=16",
            f"data.cache_dir={tmp_path / 'cache'}", "tracking.log_model=false"])
        result = runner.run(pipeline, config, store_dir=tmp_path / f"mlruns-{stream}", echo=lambda line: None)
        metrics[stream] = result.metrics
    assert set(metrics[True]) == set(metrics[False]) and "test_accuracy" in metrics[True]
    for name, value in metrics[False].items():
        assert metrics[True][name] == pytest.approx(value, abs=1e-6), name
    assert metrics[True]["test_accuracy"] > 0.5   # 4 classes: it learned something


@pytest.mark.slow
def test_streamed_run_on_jax_without_tensorflow(tmp_path):
    """The CLI streams a folder on JAX with TensorFlow hidden: the batch source is a plain PyDataset."""
    from tests.support.cli import run_cli
    from tests.support.store import only_run

    root = fashion_folder(tmp_path / "imgs", per_class=20, classes=2)
    result = run_cli(["run", "image-classification", "--preset", "smoke", "--set", f"data.source=folder:{root}",
                      "--set", "data.image_size=[28,28]", "--set", "data.stream=true",
                      "--set", "data.max_train_samples=null", "--set", "data.max_test_samples=null",
                      "--set", "train.batch_size=8", "--set", "train.epochs=1"],
                     cwd=tmp_path, backend="jax", hide_tensorflow=True)
    assert result.code == 0, result.err[-3000:]
    _, run = only_run(tmp_path, "image-classification")
    assert run.info.status == "FINISHED" and run.data.tags["backend"] == "jax"
    assert run.data.params["data.stream"] == "True" and run.data.params["data.size.test"] == "8"
    assert 0.0 <= run.data.metrics["test_accuracy"] <= 1.0
