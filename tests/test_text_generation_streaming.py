"""Streamed text corpora (pipelines/text_generation/token_store.py): the same bytes as `_join`, the same token ids
and digest as the in-memory path (also with chunks that split "\r\n" and multi-byte characters), the same
validation loss for a run, a non-UTF-8 file named before anything is written, the automatic stream decision,
and memmap splits with a cache entry reused until a file changes."""
from __future__ import annotations

import os
import random

import numpy as np
import pytest

from deepsuite.common.errors import DataError
from deepsuite.pipelines.text_generation import data, token_store
from deepsuite.pipelines.text_generation.config import TextGenerationConfig
from tests.support.data import TINY_SHAKESPEARE, needs_tiny_shakespeare

ODD = "Café “naïve” — 日本語 😀"   # 2-, 3- and 4-byte UTF-8 characters


def corpus_folder(root):
    """root holds three parts of Tiny Shakespeare: a plain Unix file; one with Windows line ends, blank lines
    around it and a line of non-ASCII characters every 40 lines; one in a subfolder with extra newlines."""
    text = TINY_SHAKESPEARE.read_text(encoding="utf-8")
    (root / "sub").mkdir(parents=True)
    (root / "a_plain.txt").write_text(text[:30_000], encoding="utf-8")
    lines = text[30_000:55_000].split("\n")
    mixed = "\n".join(line if i % 40 else f"{line} {ODD}" for i, line in enumerate(lines))
    (root / "b_windows.txt").write_bytes(f"\n\n{mixed}\n\n\n".replace("\n", "\r\n").encode("utf-8"))
    (root / "sub" / "c_more.txt").write_text(f"\n{text[55_000:70_000]}\n\n", encoding="utf-8")
    return root


def config_for(source, cache, stream, **data_fields) -> TextGenerationConfig:
    return TextGenerationConfig(data={"source": source, "cache_dir": str(cache), "stream": stream, **data_fields},
                                model={"context": 32})


def all_ids(splits) -> np.ndarray:
    return np.concatenate([splits.train.x, splits.val.x])   # test_fraction=0: test is the validation text


def test_joined_chunks_are_join_for_any_chunk_size(tmp_path):
    """Random files of "\r", "\n", "\r\n" and multi-byte characters, read in chunks of 1-6 bytes, give what
    `_join` gives, and decode to the same text and characters (max_chars cutting at the same character)."""
    rng = random.Random(0)
    pieces = [b"\r", b"\n", b"\r\n", b"a", b" ", "é".encode(), "語".encode(), "😀".encode()]
    for trial in range(300):
        files = []
        for i in range(rng.randint(1, 4)):
            files.append(tmp_path / f"{trial}-{i}.txt")
            files[-1].write_bytes(b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 14))))
        chunk = rng.randint(1, 6)
        joined = data._join(files)
        assert b"".join(piece for _, piece in token_store.joined_chunks(files, chunk)) == joined, trial
        text = joined.decode("utf-8")
        assert "".join(token_store._decoded(files, chunk)) == text, trial
        cut = rng.randint(1, 8)
        assert token_store._characters(files, cut, chunk) == sorted(set(text[:cut])), trial


@needs_tiny_shakespeare
@pytest.mark.parametrize("kind", ["char", "byte"])
def test_streamed_ids_equal_the_in_memory_ids(tmp_path, kind):
    root = corpus_folder(tmp_path / "corpus")
    raw = (root / "b_windows.txt").read_bytes()
    chunk = 7   # splits some "\r\n" and some multi-byte characters of b_windows.txt: check that it does
    assert any(raw[i:i + 2] == b"\r\n" for i in range(chunk - 1, len(raw), chunk))
    assert any(raw[i] >= 0xC0 for i in range(chunk - 1, len(raw), chunk))   # a lead byte ends a chunk
    memory = data.tokenize_and_split(data.load_corpus(f"text:{root}"), kind, 0.1, 0.0, 32)
    files = data.corpus_files(f"text:{root}").paths
    for size, max_chars in ((chunk, None), (token_store.CHUNK_BYTES, None), (chunk, 40_001)):
        stored = token_store.load_tokens(files, kind, "corpus", max_chars, tmp_path / f"cache-{size}-{max_chars}",
                                         chunk_bytes=size)
        if max_chars:
            memory = data.tokenize_and_split(data.load_corpus(f"text:{root}"), kind, 0.1, 0.0, 32, max_chars)
        assert stored.ids.dtype == np.uint8 and not stored.reused
        np.testing.assert_array_equal(stored.ids, np.concatenate([memory.train, memory.val]))
        assert stored.tokenizer.vocabulary == memory.tokenizer.vocabulary and stored.digest == memory.digest
    if kind == "char":
        assert set(ODD) <= set(stored.tokenizer.vocabulary) and "\r" not in stored.tokenizer.vocabulary
    single = [root / "b_windows.txt"]            # one file: Windows line ends made Unix, nothing trimmed
    stored = token_store.load_tokens(single, kind, "one", None, tmp_path / "cache-one", chunk_bytes=3)
    memory = data.tokenize_and_split(data.load_corpus(f"text:{single[0]}"), kind, 0.1, 0.0, 32)
    np.testing.assert_array_equal(stored.ids, np.concatenate([memory.train, memory.val]))


@needs_tiny_shakespeare
def test_splits_are_memmap_views_and_the_cache_is_reused_until_a_file_changes(tmp_path):
    root = corpus_folder(tmp_path / "corpus")
    config = config_for(f"text:{root}", tmp_path / "cache", True, test_fraction=0.05)
    splits = data.load_data(config)
    store = tmp_path / "cache" / "text-tokens"
    (ids_file,) = store.glob("*.ids")
    for part in (splits.train.x, splits.val.x, splits.test.x):
        assert isinstance(part, np.memmap) and part.dtype == np.uint8 and str(part.filename) == str(ids_file)
    fit = data.fit_data(splits, config)
    assert isinstance(fit.validation_data.x, np.memmap)             # windows reshaped from the memmap, not copied
    x, y = fit.x[0]
    assert x.dtype == y.dtype == np.int32 and x.shape == (config.train.batch_size, 32)
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    built = ids_file.stat().st_mtime_ns
    again = token_store.load_tokens(data.corpus_files(f"text:{root}").paths, "char", root.name, None, tmp_path / "cache")
    assert again.reused and ids_file.stat().st_mtime_ns == built and again.digest == splits.info.digest
    stat = (root / "sub" / "c_more.txt").stat()
    os.utime(root / "sub" / "c_more.txt", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))   # touched
    rebuilt = token_store.load_tokens(data.corpus_files(f"text:{root}").paths, "char", root.name, None,
                                      tmp_path / "cache")
    assert not rebuilt.reused and list(store.glob("*.ids")) == [ids_file]            # rebuilt in place
    np.testing.assert_array_equal(rebuilt.ids, again.ids)


@needs_tiny_shakespeare
def test_a_non_utf8_file_is_named_with_its_offset_before_anything_is_written(tmp_path):
    root = corpus_folder(tmp_path / "corpus")
    (root / "sub" / "latin1.txt").write_bytes("To be, or not to be\nthat is the question: café\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1\.txt is not UTF-8 text \(byte 45: .*data\.tokenizer=byte"):
        data.load_data(config_for(f"text:{root}", tmp_path / "cache", True))
    assert not list((tmp_path / "cache").rglob("*.ids"))
    splits = data.load_data(config_for(f"text:{root}", tmp_path / "cache", True, tokenizer="byte"))
    assert splits.metadata.tokenizer.kind == "byte"                 # byte tokens take any file


@needs_tiny_shakespeare
def test_large_for_the_memory_budget_streams_automatically(tmp_path, monkeypatch):
    source = f"text:{TINY_SHAKESPEARE}"     # 1.1 MB: ~13 MB as char tokens in memory by IN_MEMORY_FACTOR
    assert token_store.estimated_bytes([TINY_SHAKESPEARE], "char") == 12 * TINY_SHAKESPEARE.stat().st_size
    monkeypatch.setenv("DEEPSUITE_MEMORY_BUDGET", "20M")            # 25% of it is 5 MB: stream
    streamed = data.load_data(config_for(source, tmp_path / "cache", None, max_chars=100_000))
    assert isinstance(streamed.train.x, np.memmap)
    with pytest.raises(DataError, match="refusing to load it into memory; set data.stream=true"):
        data.load_data(config_for(source, tmp_path / "cache", False))   # 13 MB > 40% of 20 MB
    monkeypatch.setenv("DEEPSUITE_MEMORY_BUDGET", "1G")
    loaded = data.load_data(config_for(source, tmp_path / "cache", None, max_chars=100_000))
    assert not isinstance(loaded.train.x, np.memmap) and loaded.train.x.dtype == np.int32
    np.testing.assert_array_equal(loaded.train.x, streamed.train.x)
    assert loaded.info.digest == streamed.info.digest and loaded.metadata == streamed.metadata


@needs_tiny_shakespeare
def test_streamed_run_has_the_in_memory_validation_loss(tmp_path):
    """The smoke preset on the folder, streamed and in memory, same seed: the same ids, windows and initial
    weights with deterministic ops, so the same losses (compared to 1e-6)."""
    from deepsuite.app import registry
    from deepsuite.common import config as config_lib
    from deepsuite.common import runner

    root = corpus_folder(tmp_path / "corpus")
    pipeline = registry.get("text-generation")
    results = {}
    for stream in (True, False):
        config = config_lib.resolve(pipeline.config_cls, pipeline.presets, "smoke", None, [
            f"data.source=text:{root}", f"data.stream={stream}", "data.max_chars=40000", "data.steps_per_epoch=5",
            "data.max_eval_tokens=512", "train.epochs=1", "evaluation.max_tokens=5", "evaluation.temperatures=[0]",
            f"data.cache_dir={tmp_path / 'cache'}", "tracking.log_model=false"])
        results[stream] = runner.run(pipeline, config, store_dir=tmp_path / "mlruns", echo=lambda line: None)
    streamed, loaded = results[True], results[False]
    assert len(list((tmp_path / "cache").rglob("*.ids"))) == 1      # only the streamed run wrote token ids
    assert streamed.history["val_loss"] == pytest.approx(loaded.history["val_loss"], abs=1e-6)
    for name in ("test_loss", "test_accuracy", "test_tokens"):
        assert streamed.metrics[name] == pytest.approx(loaded.metrics[name], abs=1e-6), name
    assert streamed.history["val_loss"][-1] < np.log(60)            # below a uniform guess: it learned
