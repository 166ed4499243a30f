"""Sentiment data: the VADER sets from PyPI, the fixed split, user tables and folders, and their bad inputs."""
from __future__ import annotations

import numpy as np
import pytest

from deepsuite.common.config import validate
from deepsuite.common.errors import ConfigError, DataError
from deepsuite.pipelines.sentiment_analysis import data as text_data
from deepsuite.pipelines.sentiment_analysis.config import DataConfig, SentimentAnalysisConfig
from deepsuite.pipelines.sentiment_analysis.evaluation import binary_metrics, roc_auc
from deepsuite.pipelines.sentiment_analysis.vectorize import Vectorizer, build_vocabulary, hashed_ngrams, tokenize


@pytest.fixture(scope="module")
def movies():
    try:
        return text_data.load_vader("movie_reviews")
    except DataError as exc:  # PyPI unreachable: the loader's own error says so
        pytest.skip(f"vaderSentiment sdist unavailable: {exc}")


def test_movie_reviews_drop_neutral_sentences_and_say_so(movies):
    assert len(movies.texts) == 10605 - 37 and len(movies.labels) == len(movies.texts)
    assert int(movies.labels.sum()) == 5242  # mean rating > 0
    assert "37 sentence(s) rated exactly 0 dropped" in movies.label_rule
    assert any("Pang & Lee" in line for line in movies.card)
    assert all(t.strip() for t in movies.texts)
    assert any("clichés" in t for t in movies.texts)  # UTF-8 decoded, not mojibake


@pytest.mark.parametrize("name, total", [("tweets", 4200), ("amazon_reviews", 3708), ("nyt_editorials", 5190)])
def test_other_vader_sets_are_selectable(movies, name, total):
    corpus = text_data.load_vader(name)
    dropped = int(corpus.label_rule.split(";")[1].split()[0])
    assert len(corpus.texts) + dropped == total and set(corpus.labels.tolist()) == {0, 1}
    if name == "tweets":
        assert "&amp;" not in " ".join(corpus.texts)  # HTML entities of the tweets are decoded


def test_split_is_fixed_by_its_own_seed_and_stratified(movies):
    a = text_data.split_indices(movies, 0.1, 0.1, seed=1234)
    b = text_data.split_indices(movies, 0.1, 0.1, seed=1234)
    c = text_data.split_indices(movies, 0.1, 0.1, seed=7)
    assert all(np.array_equal(a[k], b[k]) for k in a) and not np.array_equal(a["test"], c["test"])
    assert sorted(np.concatenate(list(a.values())).tolist()) == list(range(len(movies.texts)))
    assert abs(len(a["test"]) - len(movies.texts) * 0.1) <= 2
    assert abs(movies.labels[a["test"]].mean() - movies.labels.mean()) < 0.01
    digest = lambda idx: text_data.split_digest({k: [movies.texts[i] for i in v] for k, v in idx.items()},  # noqa: E731
                                                {k: movies.labels[v] for k, v in idx.items()})
    assert digest(a) == digest(b) != digest(c) and len(digest(a)) == 16


def test_python_tokeniser_matches_text_vectorization(movies):
    """The JAX path (Python ids) and the TensorFlow path (the layer in the model) must see the same ids."""
    import keras

    texts = movies.texts[:1500] + ["", "  ", "Don't!! STOP... naïve café", "tab\tseparated\nlines"]
    vocabulary = build_vocabulary(movies.texts[:3000], 2000)
    layer = keras.layers.TextVectorization(max_tokens=2000, output_sequence_length=40, vocabulary=vocabulary[2:])
    assert layer.get_vocabulary()[:5] == vocabulary[:5]
    expected = np.asarray(layer(np.array(texts, dtype=object)))
    assert np.array_equal(Vectorizer(vocabulary, 40)(texts), expected)


def test_ngram_hashing_matches_the_model_layer():
    from deepsuite.pipelines.sentiment_analysis.layers import NaiveBayesNGrams

    rng = np.random.default_rng(0)
    ids = rng.integers(0, 5000, size=(16, 30)).astype(np.int32)
    ids[:, 20:] = 0  # padding
    layer = NaiveBayesNGrams(5000, 3, 2**12)
    features = np.asarray(layer.features(ids))
    expected = np.concatenate([ids, hashed_ngrams(ids, 2, 2**12) + 5000, hashed_ngrams(ids, 3, 2**12) + 5000 + 2**12], 1)
    expected[:, 30:][np.concatenate([hashed_ngrams(ids, 2, 2**12), hashed_ngrams(ids, 3, 2**12)], 1) == 0] = 0
    assert np.array_equal(features, expected)
    assert (features[:, 30:][features[:, 30:] > 0] >= 5000).all()


def _data(**values) -> DataConfig:
    return DataConfig(**values)


def test_csv_with_named_columns_and_star_labels(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text('id,review,stars\n1,"Great, truly great",5\n2,Awful,1\n3,Meh,3\n4,"Fine, I guess",4\n',
                    encoding="utf-8")
    corpus = text_data.load_corpus(_data(source=f"csv:{path}", text_column="review", label_column="stars"))
    assert corpus.texts == ["Great, truly great", "Awful", "Fine, I guess"]
    assert corpus.labels.tolist() == [1, 0, 1] and "1 row(s) equal to 3 dropped" in corpus.label_rule


def test_csv_missing_column_names_the_columns(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text("review,stars\nGood,5\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"no column 'text' \(set data.text_column to one of: 'review', 'stars'\)"):
        text_data.load_corpus(_data(source=f"csv:{path}", label_column="stars"))


def test_unexpected_label_values_are_an_error_not_a_guess(tmp_path):
    path = tmp_path / "reviews.tsv"
    path.write_text("text\tlabel\nGood film\tpos\nBad film\tneg\nOdd film\tmixed\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"label values \['mixed', 'neg', 'pos'\].*data.positive_labels"):
        text_data.load_corpus(_data(source=f"tsv:{path}"))
    with pytest.raises(DataError, match=r"1 label\(s\) in neither .*\['mixed'\].*reviews.tsv:4"):
        text_data.load_corpus(_data(source=f"tsv:{path}", positive_labels=["pos"], negative_labels=["neg"]))
    numeric = tmp_path / "scores.csv"
    numeric.write_text("text,label\na,0.2\nb,0.7\nc,0.9\n", encoding="utf-8")
    with pytest.raises(DataError, match="fit no known scale; set data.label_threshold"):
        text_data.load_corpus(_data(source=f"csv:{numeric}"))
    assert text_data.load_corpus(_data(source=f"csv:{numeric}", label_threshold=0.5)).labels.tolist() == [0, 1, 1]


def test_non_utf8_bytes_name_the_line_and_the_fix(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("text,label\nGood,pos\nNa\xefve film,neg\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"line 3, byte \d+: b'\\xef' is not valid utf-8.*data.encoding"):
        text_data.load_corpus(_data(source=f"csv:{path}"))
    corpus = text_data.load_corpus(_data(source=f"csv:{path}", encoding="latin-1"))
    assert corpus.texts[1] == "Naïve film"


def test_empty_texts_fail_unless_skipped(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text('text,label\nGood,1\n"  ",0\nBad,0\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"1 empty text\(s\).*reviews.csv:3.*data.skip_empty_texts=true"):
        text_data.load_corpus(_data(source=f"csv:{path}"))
    corpus = text_data.load_corpus(_data(source=f"csv:{path}", skip_empty_texts=True))
    assert corpus.texts == ["Good", "Bad"] and corpus.labels.tolist() == [1, 0]


def test_aclimdb_folder_layout_keeps_its_test_split(tmp_path):
    for split in ("train", "test"):
        for label, words in (("pos", "wonderful"), ("neg", "dreadful")):
            folder = tmp_path / "aclImdb" / split / label
            folder.mkdir(parents=True)
            for i in range(6):
                (folder / f"{i}_7.txt").write_text(f"A {words} film number {i}.", encoding="utf-8")
    (tmp_path / "aclImdb" / "train" / "unsup").mkdir()
    (tmp_path / "aclImdb" / "train" / "unsup" / "0_0.txt").write_text("no label", encoding="utf-8")
    corpus = text_data.load_corpus(_data(source=f"folder:{tmp_path / 'aclImdb'}"))
    assert len(corpus.texts) == 24 and corpus.split.count("test") == 12
    assert {t for t, y in zip(corpus.texts, corpus.labels) if y == 1} >= {"A wonderful film number 0."}
    index = text_data.split_indices(corpus, 0.2, 0.1, seed=1)
    assert all(corpus.split[i] == "test" for i in index["test"]) and len(index["test"]) == 12


def test_packed_texts_round_trip():
    texts = ["", "naïve café", "a\nb", "plain"]
    assert text_data.unpack_texts("train", text_data.pack_texts("train", texts)) == texts


def test_imdb_offline_is_a_clear_error():
    with pytest.raises(DataError, match=r"(?s)no source for dataset .imdb.*tfds:imdb_reviews.*keras:imdb"):
        text_data.load_corpus(_data(source="imdb", download=False))


def test_unknown_source_and_bad_model_config_are_named():
    with pytest.raises(DataError, match=r"unknown data.source 'reviews.csv' \(valid: movie_reviews, tweets"):
        text_data.load_corpus(_data(source="reviews.csv"))
    with pytest.raises(ConfigError, match="divisible by model.num_heads"):
        validate(SentimentAnalysisConfig, {"model": {"kind": "transformer", "embedding_dim": 30, "num_heads": 4}})
    with pytest.raises(ConfigError, match="both data.positive_labels and data.negative_labels"):
        validate(SentimentAnalysisConfig, {"data": {"positive_labels": ["good"]}})


def test_binary_metrics_and_roc_auc_by_pair_counting():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200)
    p = np.clip(y * 0.3 + rng.random(200) * 0.7, 0, 1).round(2)  # ties included
    pairs = [(a > b) + 0.5 * (a == b) for a in p[y == 1] for b in p[y == 0]]
    assert roc_auc(y, p) == pytest.approx(np.mean(pairs))
    m = binary_metrics(y, p)
    assert m["accuracy"] == pytest.approx(np.mean((p >= 0.5) == y)) and 0 < m["f1"] <= 1
    assert tokenize("It's GREAT -- isn't it?") == ["its", "great", "isnt", "it"]


def test_predict_inputs_reject_undecodable_arguments_and_read_files(tmp_path):
    import os

    from deepsuite.pipelines.sentiment_analysis.inference import expand_inputs

    with pytest.raises(DataError, match="input 2 is not valid UTF-8"):
        expand_inputs(["fine", os.fsdecode(b"caf\xe9 au lait")])  # how argv carries bytes that are not UTF-8
    listing = tmp_path / "texts.txt"
    listing.write_text("first\n\n  \nsecond\n", encoding="utf-8")
    assert expand_inputs([""], [listing]) == [("[1]", ""), ("texts.txt:1", "first"), ("texts.txt:4", "second")]
    assert expand_inputs([str(listing)]) == [("[1]", str(listing))]  # a text naming a file is a text, never read
    (tmp_path / "blank.txt").write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="no text in the file"):
        expand_inputs([], [tmp_path / "blank.txt"])


def test_ngram_branch_binary_counts_each_gram_once_and_prior_starts_at_naive_bayes():
    from deepsuite.pipelines.sentiment_analysis.layers import NaiveBayesNGrams

    ids = np.array([[5, 6, 5, 6, 5, 0], [7, 0, 0, 0, 0, 0]], dtype=np.int32)  # "a b a b a": repeated uni/bi-grams
    ratios = np.random.default_rng(1).normal(size=10 + 2 * 64).astype("float32")
    ratios[:2] = 0  # padding and [UNK]
    for binary in (False, True):
        layer = NaiveBayesNGrams(10, 3, 64, prior=0.5, binary=binary)
        layer.build(ids.shape)
        layer.set_ratios(ratios)
        features = np.asarray(layer.features(ids))
        grams = [np.unique(row) if binary else row for row in features]
        expected = [0.5 * ratios[g].sum() for g in grams]  # learned weights start at 0: prior * NB log-ratios
        np.testing.assert_allclose(np.asarray(layer(ids))[:, 0], expected, rtol=1e-5, atol=1e-6)
    assert NaiveBayesNGrams.from_config(layer.get_config()).binary
