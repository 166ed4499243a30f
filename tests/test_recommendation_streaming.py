"""Streamed ratings CSVs (pipelines/recommendation/rating_store.py, rating_csv.py, stream_splits.py,
rating_batches.py): the
splits, batches and metrics of the in-memory path, a bad line named before training, the automatic choice,
and memmapped columns cached per file version. Data: real MovieLens 100K ratings (the pipeline's offline
loader), a subset of users written as CSV files into tmp_path."""
from __future__ import annotations

import numpy as np
import pytest

from deepsuite.common.errors import DataError
from deepsuite.pipelines.recommendation.config import RecommendationConfig
from deepsuite.pipelines.recommendation.ratings import load_ratings
from deepsuite.pipelines.recommendation.splits import split_ratings


@pytest.fixture(scope="module")
def movielens():
    return load_ratings("movielens-100k")


def write_ratings(path, ratings, max_user: int, string_ids: bool = False, duplicates: int = 0):
    """The ratings of users 1..max_user as user,item,rating,timestamp (ids as "u12"/"i7" when `string_ids`);
    `duplicates` extra rows repeat earlier pairs later in the file with another rating and a later time."""
    keep = ratings.users <= max_user
    rows = list(zip(ratings.users[keep].tolist(), ratings.items[keep].tolist(), ratings.ratings[keep].tolist(),
                    ratings.timestamps[keep].tolist()))
    rows += [(u, i, 6 - v, t + 10) for u, i, v, t in rows[:duplicates * 7:7]]
    ident = (lambda u, i: (f"u{u}", f"i{i}")) if string_ids else (lambda u, i: (u, i))
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("user,item,rating,timestamp\n")
        for u, i, v, t in rows:
            handle.write("{},{},{:g},{}\n".format(*ident(u, i), v, t))
    return path


def config(path, tmp_path, train: dict | None = None, **data) -> RecommendationConfig:
    data = {"source": f"csv:{path}", "cache_dir": str(tmp_path / "cache"), **data}
    return RecommendationConfig.model_validate({"data": data, "train": train or {}})


def test_streamed_run_gives_the_in_memory_metrics(movielens, tmp_path):
    """The smoke preset (biased MF, random split) on the same CSV, streamed and in memory, same seed: the same
    split, the same (seed, epoch) batches, so the same weights; every test metric agrees to 1e-6."""
    from deepsuite.app import registry
    from deepsuite.common import config as config_lib
    from deepsuite.common import runner

    path = write_ratings(tmp_path / "ratings.csv", movielens, max_user=120)
    pipeline = registry.get("recommendation")
    results = {}
    for stream in (True, False):
        run_config = config_lib.resolve(pipeline.config_cls, pipeline.presets, "smoke", None, [
            f"data.source=csv:{path}", f"data.stream={stream}", "data.max_users=null",
            f"data.cache_dir={tmp_path / 'cache'}", "tracking.log_model=false"])
        results[stream] = runner.run(pipeline, run_config, store_dir=tmp_path / f"mlruns-{stream}",
                                     echo=lambda line: None)
    streamed, in_memory = results[True].metrics, results[False].metrics
    assert set(streamed) == set(in_memory) and {"test_rmse", "test_ndcg_at_10", "test_ease_ndcg_at_10"} <= set(streamed)
    for name, value in in_memory.items():
        assert streamed[name] == pytest.approx(value, abs=1e-6), name
    assert streamed["test_rmse"] < streamed["test_global_mean_rmse"]   # it trained
    assert results[True].history["val_loss"] == pytest.approx(results[False].history["val_loss"], abs=1e-6)


def test_malformed_line_is_named_before_training(movielens, tmp_path):
    from deepsuite.pipelines.recommendation import data as data_lib
    from deepsuite.pipelines.recommendation import rating_csv

    path = write_ratings(tmp_path / "ratings.csv", movielens, max_user=20)
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[1500 - 1] = lines[1500 - 1].rsplit(",", 2)[0] + ",four,881250949"     # line 1500: rating "four"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rating_csv.CHUNK_ROWS, chunk = 512, rating_csv.CHUNK_ROWS             # the bad row in a later chunk
    try:
        with pytest.raises(DataError, match=r"ratings\.csv line 1500: rating 'four' is not a number"):
            data_lib.load_data(config(path, tmp_path, stream=True))
        lines[1500 - 1], lines[2100 - 1] = lines[1], "7,31"                      # line 2100: two fields
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        with pytest.raises(DataError, match=r"ratings\.csv line 2100: 2 field\(s\), expected user,item,rating"):
            data_lib.load_data(config(path, tmp_path, stream=True))
        path.write_bytes(path.read_bytes().replace(b"\n7,", b"\n7\xe9,", 1))     # not UTF-8 on user 7's first row
        bad = next(n for n, line in enumerate(path.read_text(encoding="latin-1").splitlines(), start=1)
                   if line.startswith("7\xe9,"))
        with pytest.raises(DataError, match=rf"ratings\.csv: line {bad}, byte \d+: b'\\xe9' is not valid utf-8"):
            data_lib.load_data(config(path, tmp_path, stream=True))
    finally:
        rating_csv.CHUNK_ROWS = chunk
    assert not any((tmp_path / "cache" / "ratings-stream").glob("ratings-*"))  # nothing cached for a bad file


def test_streaming_is_chosen_by_the_memory_budget(movielens, tmp_path, monkeypatch):
    from deepsuite.pipelines.recommendation import data as data_lib

    path = write_ratings(tmp_path / "ratings.csv", movielens, max_user=30)    # ~60 KB: ~2.4 MB in memory
    monkeypatch.setenv("DEEPSUITE_MEMORY_BUDGET", "4M")
    assert data_lib.streams(config(path, tmp_path).data)                     # over 25% of 4 MB: streamed
    splits = data_lib.load_data(config(path, tmp_path, max_users=None))
    assert splits.catalogue.streamed and isinstance(splits.train.y, np.memmap)
    with pytest.raises(DataError, match=r"refusing to load it into memory; set data\.stream=true"):
        data_lib.streams(config(path, tmp_path, stream=False).data)
    monkeypatch.setenv("DEEPSUITE_MEMORY_BUDGET", "8G")
    assert not data_lib.streams(config(path, tmp_path).data)
    assert not data_lib.load_data(config(path, tmp_path)).catalogue.streamed
    assert not data_lib.streams(RecommendationConfig.model_validate({"data": {"stream": True}}).data)  # MovieLens


def test_columns_are_memmaps_reused_and_rebuilt_when_the_file_changes(movielens, tmp_path):
    import os

    from deepsuite.pipelines.recommendation.rating_store import open_store

    path = write_ratings(tmp_path / "ratings.csv", movielens, max_user=40, duplicates=25)
    first = open_store(path, cache_dir=str(tmp_path / "cache"))
    assert not first.reused and all(isinstance(c, np.memmap) for c in (first.users, first.items, first.ratings,
                                                                        first.times))
    assert (first.users.dtype, first.items.dtype, first.ratings.dtype, first.times.dtype) == \
        (np.int32, np.int32, np.float32, np.int64)
    in_memory = load_ratings(f"csv:{path}")                                   # duplicates: the latest row kept
    assert len(first) == len(in_memory) and first.notes == in_memory.notes and "25 (user, item) pairs" in first.notes[0]
    np.testing.assert_array_equal(first.ratings, in_memory.ratings)
    np.testing.assert_array_equal(first.user_vocab[first.users - 1], in_memory.users)
    np.testing.assert_array_equal(first.item_vocab[first.items - 1], in_memory.items)
    again = open_store(path, cache_dir=str(tmp_path / "cache"))
    assert again.reused and again.folder == first.folder and isinstance(again.ratings, np.memmap)
    np.testing.assert_array_equal(again.ratings, first.ratings)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("99999,1,5,893286638\n")
    os.utime(path, ns=(first.folder.stat().st_mtime_ns + 10**9,) * 2)
    changed = open_store(path, cache_dir=str(tmp_path / "cache"))
    assert not changed.reused and changed.folder != first.folder and len(changed) == len(first) + 1
    assert changed.user_vocab[-1] == 99999


def test_string_ids_stream_with_the_in_memory_splits_and_batches(movielens, tmp_path):
    """"u12"/"i7" ids: the same vocabularies and temporal split as in memory, and the training batches of each
    epoch are those the in-memory arrays get on this backend (same permutation, same model inputs)."""
    import keras

    from deepsuite.common.batches import epoch_seeded_arrays
    from deepsuite.pipelines.recommendation import data as data_lib
    from deepsuite.pipelines.recommendation.splits import model_inputs

    path = write_ratings(tmp_path / "ratings.csv", movielens, max_user=25, string_ids=True)
    run_config = config(path, tmp_path, {"batch_size": 256}, stream=True, split="temporal")
    splits = data_lib.load_data(run_config)
    cat = splits.catalogue
    expected = split_ratings(load_ratings(f"csv:{path}"), "temporal", 0.2, 0.05, run_config.seed)
    assert cat.streamed and cat.user_vocab.dtype == object and cat.user_vocab[0] == "u1"
    np.testing.assert_array_equal(cat.item_vocab, expected.item_vocab)
    for part in ("train", "val", "test"):
        np.testing.assert_array_equal(np.asarray(getattr(cat, part).raw_items), getattr(expected, part).raw_items)
        np.testing.assert_array_equal(getattr(cat, part).ratings, getattr(expected, part).ratings)
    assert splits.info.digest == data_lib.load_data(config(path, tmp_path, stream=False, split="temporal")).info.digest

    feed = data_lib.fit_data(splits, run_config).x
    arrays = epoch_seeded_arrays(model_inputs(expected, splits.metadata.id_mode, expected.train.users,
                                              expected.train.items), expected.train.ratings, 256, run_config.seed)
    for epoch in (2, 0):
        feed.set_epoch(epoch)
        arrays.set_epoch(epoch)
        ours = list(feed.dataset) if hasattr(feed, "dataset") else [feed[i] for i in range(len(feed))]
        theirs = list(arrays.dataset) if hasattr(arrays, "dataset") else [arrays[i] for i in range(len(arrays))]
        assert len(ours) == len(theirs) == -(-len(cat.train) // 256)
        for (x, y), (ax, ay) in zip(ours, theirs):
            for name in ("user_id", "item_id"):
                np.testing.assert_array_equal(keras.ops.convert_to_numpy(x[name]), keras.ops.convert_to_numpy(ax[name]))
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(y), keras.ops.convert_to_numpy(ay))


@pytest.mark.slow
def test_streamed_run_on_jax_without_tensorflow(movielens, tmp_path):
    """The CLI streams a CSV of string ids on JAX with TensorFlow hidden (ids become indices outside the model,
    batches a plain PyDataset), and `recommend` answers one of its users from the export."""
    import json

    from tests.support.cli import run_cli
    from tests.support.store import only_run

    path = write_ratings(tmp_path / "ratings.csv", movielens, max_user=60, string_ids=True)
    result = run_cli(["run", "recommendation", "--preset", "smoke", "--set", f"data.source=csv:{path}",
                      "--set", "data.stream=true", "--set", "data.max_users=null"],
                     cwd=tmp_path, backend="jax", hide_tensorflow=True)
    assert result.code == 0, result.err[-3000:]
    _, run = only_run(tmp_path, "recommendation")
    assert run.info.status == "FINISHED" and run.data.tags["backend"] == "jax"
    assert run.data.params["data.stream"] == "True"
    assert run.data.metrics["test_rmse"] < run.data.metrics["test_global_mean_rmse"]
    answer = run_cli(["recommend", run.info.run_id, "--user", "u7", "--top", "3", "--json"], cwd=tmp_path,
                     backend="jax", hide_tensorflow=True)
    assert answer.code == 0, answer.err[-2000:]
    ranked = [json.loads(line) for line in answer.out.strip().splitlines()]
    assert [a["rank"] for a in ranked] == [1, 2, 3] and all(str(a["item_id"]).startswith("i") for a in ranked)
    assert ranked[0]["fallback"] is None
