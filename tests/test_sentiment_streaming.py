"""Streamed sentiment sources (pipelines/sentiment_analysis/streaming.py, common/data/text_tables.py): the same
texts, labels, split, digest and vocabulary as the in-memory readers, a bad row or file named before training
with the in-memory words, the stream/memory decision, the arrays' batch order, and a streamed run giving the
test metrics of the in-memory run. The texts are real movie-review sentences (VADER's, via the pipeline's own
loader), written into tmp_path as a CSV and as an aclImdb-style class-folder tree."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from deepsuite.common.data.text_tables import TextRecords
from deepsuite.common.errors import DataError
from deepsuite.pipelines.sentiment_analysis import data as text_data
from deepsuite.pipelines.sentiment_analysis import streaming
from deepsuite.pipelines.sentiment_analysis.config import DataConfig, SentimentAnalysisConfig


@pytest.fixture(scope="module")
def reviews():
    """400 movie-review sentences, every 25th of the 10,568, with both labels well represented."""
    try:
        movies = text_data.load_vader("movie_reviews")
    except DataError as exc:
        pytest.skip(f"vaderSentiment sdist unavailable: {exc}")
    rows = [(text, int(label)) for text, label in zip(movies.texts[::25], movies.labels[::25])][:400]
    assert 100 < sum(label for _, label in rows) < 300
    return rows


def write_csv(path, rows, awkward: bool = False):
    """text,stars CSV (1 = negative, 5 = positive). `awkward`: a byte-order mark, CRLF line ends, blank lines
    between records, a quoted text spanning lines, and 3-star rows (dropped by the 1-5 rule)."""
    with open(path, "w", encoding="utf-8-sig" if awkward else "utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\r\n" if awkward else "\n")
        writer.writerow(["id", "text", "stars"])
        for i, (text, label) in enumerate(rows):
            if awkward and i % 50 == 7:
                handle.write("\r\n")
                writer.writerow([f"x{i}", f"{text}\nsecond line, \"quoted\"", 3])
            writer.writerow([i, text, 5 if label else 1])
    return path


def write_folders(root, rows):
    """aclImdb's layout: root/{train,test}/{neg,pos}/<i>.txt, every 4th sentence in test/."""
    for i, (text, label) in enumerate(rows):
        folder = root / ("test" if i % 4 == 0 else "train") / ("pos" if label else "neg")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:04d}_{7 if label else 2}.txt").write_text(f"  {text}\n", encoding="utf-8")
    return root


def config_for(source: str, stream, **data) -> SentimentAnalysisConfig:
    from deepsuite.common import config as config_lib
    from deepsuite.pipelines.sentiment_analysis.config import PRESETS

    settings = [f"data.source={source}", f"data.stream={'null' if stream is None else stream}"]
    settings += [f"data.{k}={v}" for k, v in data.items()]
    return config_lib.resolve(SentimentAnalysisConfig, PRESETS, "smoke", None, settings)


@pytest.mark.parametrize("layout", ["csv", "folder"])
def test_streamed_split_is_the_in_memory_split_without_the_texts(tmp_path, reviews, layout):
    source = (f"csv:{write_csv(tmp_path / 'reviews.csv', reviews, awkward=True)}" if layout == "csv"
              else f"folder:{write_folders(tmp_path / 'aclImdb', reviews)}")
    extra = {"text_column": "text", "label_column": "stars"} if layout == "csv" else {}
    streamed = text_data.load_data(config_for(source, True, **extra))
    loaded = text_data.load_data(config_for(source, False, **extra))
    assert streamed.info.digest == loaded.info.digest            # same texts, labels and split, in order
    assert streamed.metadata.vocabulary == loaded.metadata.vocabulary
    assert streamed.metadata.label_rule == loaded.metadata.label_rule
    assert streamed.sizes() == loaded.sizes()
    if layout == "csv":
        assert "8 row(s) equal to 3 dropped" in streamed.metadata.label_rule
    else:
        assert streamed.sizes()["test"] == 100                   # aclImdb's own test/ kept
    for name in ("train", "val", "test"):
        ours, theirs = getattr(streamed, name), getattr(loaded, name)
        assert isinstance(ours.x, TextRecords) and ours.texts is ours.x   # an index, no list of strings
        assert ours.x.rows.dtype == np.int64 and not isinstance(ours.x, list)
        np.testing.assert_array_equal(ours.y, theirs.y)
        assert list(ours.x) == theirs.texts                      # read back: the strings the reader gives
    assert streamed.train.x[3] == loaded.train.texts[3]


def test_bad_rows_and_files_are_named_before_training_as_in_memory(tmp_path, reviews):
    def error(source, stream, **extra):
        with pytest.raises(DataError) as caught:
            text_data.load_data(config_for(source, stream, **extra))
        return str(caught.value)

    table = write_csv(tmp_path / "reviews.csv", reviews[::5])
    lines = table.read_bytes().split(b"\n")
    short = tmp_path / "short.csv"
    short.write_bytes(b"\n".join(lines[:40] + [b"just one field"] + lines[40:]))
    message = error(f"csv:{short}", True, text_column="text", label_column="stars")
    assert message == error(f"csv:{short}", False, text_column="text", label_column="stars")
    assert "short.csv: line 41 has 1 fields, expected 3" in message
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"\n".join(lines[:25] + ["Na\xefve and charming,1,5".encode("latin-1")] + lines[25:]))
    message = error(f"csv:{latin}", True, text_column="text", label_column="stars")
    assert message == error(f"csv:{latin}", False, text_column="text", label_column="stars")
    assert "latin.csv: line 26, byte" in message and "is not valid utf-8" in message

    root = write_folders(tmp_path / "aclImdb", reviews[::5])
    bad = root / "train" / "neg" / "9999_1.txt"
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_bytes("A dull, clich\xe9d film.".encode("cp1252"))
    message = error(f"folder:{root}", True)
    assert message == error(f"folder:{root}", False)
    assert f"{bad}: line 1, byte 13" in message and "data.encoding" in message
    bad.write_bytes(b"   \n")
    assert "1 empty text(s)" in error(f"folder:{root}", True) and "9999_1.txt" in error(f"folder:{root}", True)


def test_unset_stream_streams_when_the_memory_budget_is_tiny(tmp_path, reviews, monkeypatch):
    source = f"csv:{write_csv(tmp_path / 'reviews.csv', reviews)}"
    extra = {"text_column": "text", "label_column": "stars"}
    assert not streaming.decide(config_for(source, None, **extra).data)   # ~45 kB: loaded
    monkeypatch.setenv("DEEPSUITE_MEMORY_BUDGET", "200K")                # 10 x ~45 kB > 25% of 200 kB
    assert streaming.decide(config_for(source, None, **extra).data)
    splits = text_data.load_data(config_for(source, None, **extra))
    assert isinstance(splits.train.x, TextRecords)
    with pytest.raises(DataError, match=r"refusing to load it into memory; set data.stream=true"):
        text_data.load_data(config_for(source, False, **extra))
    monkeypatch.delenv("DEEPSUITE_MEMORY_BUDGET")
    with pytest.raises(DataError, match=r"data.encoding='utf-16' cannot be streamed"):
        streaming.decide(config_for(source, True, encoding="utf-16", **extra).data)
    assert not streaming.decide(DataConfig(source="movie_reviews", stream=True))   # packaged: in memory


def test_batches_follow_the_arrays_order(tmp_path, reviews):
    """Each epoch's training batches are those the in-memory arrays are drawn in for this backend, model
    inputs (ids, or strings on TensorFlow) included; validation comes in file order."""
    import keras

    from deepsuite.common.batches import epoch_seeded_arrays

    source = f"csv:{write_csv(tmp_path / 'reviews.csv', reviews)}"
    extra = {"text_column": "text", "label_column": "stars"}
    config = config_for(source, True, **extra)
    streamed = text_data.load_data(config)
    loaded = text_data.load_data(config_for(source, False, **extra))
    fit = text_data.fit_data(streamed, config)
    train_y = np.asarray(loaded.train.y, dtype="float32")[:, None]
    arrays = epoch_seeded_arrays(loaded.train.x, train_y, config.train.batch_size, config.seed)
    as_numpy = keras.ops.convert_to_numpy
    for epoch in (2, 0):
        fit.x.set_epoch(epoch)
        arrays.set_epoch(epoch)
        ours = [fit.x[i] for i in range(len(fit.x))]
        theirs = list(arrays.dataset) if hasattr(arrays, "dataset") else [arrays[i] for i in range(len(arrays))]
        assert len(ours) == len(theirs) == 5
        for (x, y), (ax, ay) in zip(ours, theirs):
            np.testing.assert_array_equal(np.asarray(x).astype(bytes) if x.dtype == object else x,
                                          as_numpy(ax).astype(bytes) if x.dtype == object else as_numpy(ax))
            np.testing.assert_array_equal(y, as_numpy(ay))
    val = [batch[1] for batch in (fit.validation_data if isinstance(fit.validation_data, keras.utils.PyDataset)
                                  else fit.validation_data.as_numpy_iterator())]
    np.testing.assert_array_equal(np.concatenate(val)[:, 0], loaded.val.y)


def test_streamed_run_matches_the_in_memory_run(tmp_path, reviews):
    """The smoke preset on a CSV of real sentences, streamed and loaded, same seed: the same split digest, the
    same vocabulary in the export and the same test metrics (same batches, so the same weights)."""
    from deepsuite.app import registry
    from deepsuite.common import config as config_lib
    from deepsuite.common import runner

    table = write_csv(tmp_path / "reviews.csv", reviews)
    pipeline = registry.get("sentiment-analysis")
    results = {}
    for stream in (True, False):
        config = config_lib.resolve(pipeline.config_cls, pipeline.presets, "smoke", None, [
            f"data.source=csv:{table}", "data.text_column=text", "data.label_column=stars",
            f"data.stream={stream}", "tracking.log_model=false"])
        results[stream] = runner.run(pipeline, config, store_dir=tmp_path / f"mlruns-{stream}",
                                     echo=lambda line: None)
    exports = {s: json.loads((r.model_path.parent / "deepsuite.json").read_text()) for s, r in results.items()}
    meta = {s: e.get("metadata", e) for s, e in exports.items()}
    assert meta[True]["vocabulary"] == meta[False]["vocabulary"] and len(meta[True]["vocabulary"]) > 500
    assert meta[True]["split_digest"] == meta[False]["split_digest"]
    metrics = {s: r.metrics for s, r in results.items()}
    assert set(metrics[True]) == set(metrics[False]) and "test_accuracy" in metrics[True]
    for name, value in metrics[False].items():
        assert metrics[True][name] == pytest.approx(value, abs=1e-6), name
    curves = {s: r.history for s, r in results.items()}          # the same batches: the same training curves
    assert curves[True].keys() == curves[False].keys() and len(curves[True]["val_loss"]) == 2
    for name, values in curves[False].items():
        assert curves[True][name] == pytest.approx(values, abs=1e-6), name
    assert curves[True]["loss"][1] < curves[True]["loss"][0]      # and it trained (320 sentences, 2 epochs)


@pytest.mark.slow
def test_streamed_folder_run_on_jax_without_tensorflow(tmp_path, reviews):
    """The CLI streams a class-folder tree on JAX with TensorFlow hidden: batches of token ids from a plain
    PyDataset, the report's error table read from disk."""
    from tests.support.cli import run_cli
    from tests.support.store import only_run

    root = write_folders(tmp_path / "aclImdb", reviews)
    result = run_cli(["run", "sentiment-analysis", "--preset", "smoke", "--set", f"data.source=folder:{root}",
                      "--set", "data.stream=true", "--set", "train.epochs=1"],
                     cwd=tmp_path, backend="jax", hide_tensorflow=True)
    assert result.code == 0, result.err[-3000:]
    _, run = only_run(tmp_path, "sentiment-analysis")
    assert run.info.status == "FINISHED" and run.data.tags["backend"] == "jax"
    assert run.data.params["data.stream"] == "True" and run.data.params["data.size.test"] == "100"
    assert 0.0 <= run.data.metrics["test_accuracy"] <= 1.0
    errors = next((tmp_path / "mlruns").rglob("most_confident_errors.csv")).read_text(encoding="utf-8")
    assert errors.count("\n") > 1   # the shown texts, read back from their files
