"""Recommendation data, splits, metrics and baselines on real MovieLens 100K (no training, seconds)."""
from __future__ import annotations

import numpy as np
import pytest

from deepsuite.common.errors import DataError
from deepsuite.common.metrics_ranking import ranking_metrics, top_k
from deepsuite.pipelines.recommendation.ratings import Ratings, apply_duplicate_policy, load_ratings, read_csv
from deepsuite.pipelines.recommendation.ranking import baseline_scorers, evaluate_ranker
from deepsuite.pipelines.recommendation.splits import index_of, split_ratings


@pytest.fixture(scope="module")
def movielens():
    return load_ratings("movielens-100k")


def test_movielens_100k_comes_from_the_recbole_wheel(movielens):
    assert movielens.source.startswith("pypi:recbole==1.2.1/")
    assert len(movielens) == 100_000
    assert len(np.unique(movielens.users)) == 943 and len(np.unique(movielens.items)) == 1682
    assert movielens.users.dtype.kind == "i" and movielens.timestamps is not None
    assert set(np.unique(movielens.ratings)) == {1, 2, 3, 4, 5}
    assert movielens.titles[1] == "Toy Story (1995)" and "Animation" in movielens.genres[1]
    assert "gender=M" in movielens.user_attributes[1]


def test_temporal_split_is_leave_last_out_with_the_stated_tie_break(movielens):
    cat = split_ratings(movielens, "temporal", 0.2, 0.05, seed=0)
    assert len(cat.test) == 943 and len(cat.val) == 943 and len(cat.train) == 100_000 - 2 * 943
    # user 1's last rating: the highest item id among the ratings at the user's last timestamp
    mask = movielens.users == 1
    last_time = movielens.timestamps[mask].max()
    expected = movielens.items[mask & (movielens.timestamps == last_time)].max()
    assert cat.test.raw_items[cat.test.raw_users == 1].tolist() == [expected]
    for user in (1, 500, 943):  # nothing in train or val is later than the user's test rating
        u = index_of(cat.user_vocab, np.array([user]))[0]
        test_time = cat.test.times[cat.test.users == u][0]
        assert cat.train.times[cat.train.users == u].max() <= test_time
        assert cat.val.times[cat.val.users == u][0] <= test_time
    ties = sum(1 for u in np.unique(movielens.users)
               if (movielens.timestamps[movielens.users == u] == movielens.timestamps[movielens.users == u].max()).sum() > 1)
    assert ties == 415  # the issue's count of users with ties at their last timestamp


def test_random_split_is_seeded_and_sized(movielens):
    a = split_ratings(movielens, "random", 0.2, 0.05, seed=1)
    b = split_ratings(movielens, "random", 0.2, 0.05, seed=1)
    assert len(a.test) == 20_000 and len(a.val) == 4_000 and len(a.train) == 76_000
    assert np.array_equal(a.test.raw_items, b.test.raw_items)
    assert a.item_features is not None and a.item_features.shape == (1683, len(a.feature_names["item"]))
    assert a.user_features is not None and np.allclose(a.user_features[1:].sum(axis=1), 1.0)


def test_baselines_reproduce_the_issue_figures(movielens):
    """Most popular HR@10 0.050 / NDCG@10 0.025 and EASE 0.088 / 0.041 on the leave-last-out split."""
    cat = split_ratings(movielens, "temporal", 0.2, 0.0, seed=0)
    scorers, _ = baseline_scorers(cat, knn_neighbours=100, ease_l2=200.0, max_items=20000)
    pop = evaluate_ranker(scorers["popularity"], cat, 10).metrics
    ease = evaluate_ranker(scorers["ease"], cat, 10).metrics
    knn = evaluate_ranker(scorers["item_knn"], cat, 10).metrics
    assert pop["hit_rate_at_10"] == pytest.approx(0.050, abs=0.002) and pop["ndcg_at_10"] == pytest.approx(0.025, abs=0.001)
    assert ease["hit_rate_at_10"] == pytest.approx(0.088, abs=0.003) and ease["ndcg_at_10"] == pytest.approx(0.041, abs=0.002)
    assert knn["ndcg_at_10"] > pop["ndcg_at_10"] and knn["coverage_at_10"] > pop["coverage_at_10"]


def test_ranking_metrics_by_hand():
    scores = np.array([[0.0, 0.9, 0.8, 0.7, 0.1], [0.0, 0.1, 0.2, 0.3, 0.4]])
    seen = np.zeros_like(scores, dtype=bool)
    seen[:, 0] = True
    seen[0, 1] = True                                        # user 0 already rated item 1
    top = top_k(scores, 2, seen)
    assert top.tolist() == [[2, 3], [4, 3]]
    relevant = np.zeros_like(seen)
    relevant[0, 3] = True                                   # hit at rank 2
    relevant[1, [1, 2]] = True                              # two relevant, no hit
    m = ranking_metrics(top, relevant, catalogue_size=4)
    assert m["hit_rate_at_2"] == 0.5 and m["recall_at_2"] == 0.5  # (1/1 + 0/2) / 2
    assert m["ndcg_at_2"] == pytest.approx((1 / np.log2(3)) / 2)
    assert m["coverage_at_2"] == 0.75


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_with_header_aliases_string_ids_and_iso_dates(tmp_path):
    path = _write(tmp_path / "r.csv", "userId,movieId,rating,timestamp\nu1,m9,4,2020-01-02\nu2,m9,3.5,2020-01-01 10:00:00\n")
    ratings = read_csv(path)
    assert ratings.users.tolist() == ["u1", "u2"] and ratings.ratings.tolist() == [4.0, 3.5]
    assert ratings.timestamps[0] > ratings.timestamps[1]


def test_headerless_tab_separated_file_without_times(tmp_path):
    ratings = read_csv(_write(tmp_path / "r.tsv", "1\t2\t3\n1\t3\t4\n"))
    assert ratings.users.dtype.kind == "i" and ratings.timestamps is None
    assert any("file order" in note for note in ratings.notes)


@pytest.mark.parametrize("text, message", [
    ("user,item\n1,2\n", "missing column(s) rating"),
    ("user,item,rating\n1,2,abc\n", "line 2: rating 'abc' is not a number"),
    ("user,movie,stars\n1,2,3\n", "missing column(s) item"),
    ("", "empty file"),
    ("user,item,rating\n", "no rating rows"),
    ("user,item,rating\n1,2\n", "line 2: 2 field(s)"),
])
def test_bad_csv_files_are_named_clearly(tmp_path, text, message):
    with pytest.raises(DataError, match=None) as error:
        read_csv(_write(tmp_path / "bad.csv", text))
    assert message in str(error.value) and "bad.csv" in str(error.value)


def test_missing_file_and_unknown_source(tmp_path):
    with pytest.raises(DataError, match="ratings file not found"):
        load_ratings(f"csv:{tmp_path / 'nope.csv'}")
    with pytest.raises(DataError, match="not a ratings source"):
        load_ratings("kaggle:netflix")


def _dupes() -> Ratings:
    return Ratings("d", "csv:d.csv", np.array([1, 1, 2, 1]), np.array([10, 11, 10, 10]),
                   np.array([4, 3, 5, 2], dtype="float32"), np.array([100, 101, 99, 105]))


def test_duplicate_policies():
    latest = apply_duplicate_policy(_dupes(), "latest")
    assert sorted(zip(latest.users.tolist(), latest.items.tolist(), latest.ratings.tolist())) == [
        (1, 10, 2.0), (1, 11, 3.0), (2, 10, 5.0)]
    assert "kept the latest" in latest.notes[-1]
    mean = apply_duplicate_policy(_dupes(), "mean")
    assert dict(zip(zip(mean.users.tolist(), mean.items.tolist()), mean.ratings.tolist()))[(1, 10)] == 3.0
    with pytest.raises(DataError, match="appear more than once.*data.duplicates"):
        apply_duplicate_policy(_dupes(), "error")


def test_index_of_maps_unknown_ids_to_zero():
    vocab = np.array([3, 7, 9])
    assert index_of(vocab, np.array([7, 3, 8, 10, 9])).tolist() == [2, 1, 0, 0, 3]
    strings = np.array(["a", "c"], dtype=object)
    assert index_of(strings, np.array(["c", "b"])).tolist() == [2, 0]
    assert index_of(vocab, np.array(["x"])).tolist() == [0]


def test_grouplens_zip_from_the_cache_and_offline_message(tmp_path, movielens):
    """A GroupLens ml-100k.zip placed in the cache is read (titles, genres, users); a missing one is explained."""
    import zipfile

    folder = tmp_path / "grouplens"
    folder.mkdir()
    rows = range(40)
    genres = ["unknown", "Action", "Comedy"]
    with zipfile.ZipFile(folder / "ml-100k.zip", "w") as zf:
        zf.writestr("ml-100k/u.data", "".join(f"{movielens.users[k]}\t{movielens.items[k]}\t{int(movielens.ratings[k])}\t"
                                               f"{movielens.timestamps[k]}\n" for k in rows))
        zf.writestr("ml-100k/u.genre", "".join(f"{g}|{n}\n" for n, g in enumerate(genres)))
        zf.writestr("ml-100k/u.item", "".join(f"{i}|Movie {i} (1990)|01-Jan-1990||http://x|0|{i % 2}|1\n"
                                               for i in np.unique(movielens.items[:40])))
        zf.writestr("ml-100k/u.user", "".join(f"{u}|33|F|writer|12345\n" for u in np.unique(movielens.users[:40])))
    ratings = load_ratings("grouplens:ml-100k", cache_dir=str(tmp_path), download=False)
    assert len(ratings) == 40 and ratings.source.startswith("grouplens:")
    item = int(movielens.items[0])
    assert ratings.titles[item] == f"Movie {item} (1990)"
    assert ratings.genres[item] == (["Action", "Comedy"] if item % 2 else ["Comedy"])
    assert ratings.user_attributes[int(movielens.users[0])] == ["gender=F", "occupation=writer", "age=30s"]
    with pytest.raises(DataError, match="ml-1m.zip is missing and data.download=false"):
        load_ratings("grouplens:ml-1m", cache_dir=str(tmp_path), download=False)


@pytest.mark.parametrize("kind, tuned", [("mf", "model.l2"), ("two_tower", "model.temperature")])
def test_search_space_gives_a_valid_config_per_model_kind(kind, tuned):
    import keras_tuner as kt

    from deepsuite.common.config import resolve
    from deepsuite.pipelines.recommendation import config as cfg

    base = resolve(cfg.RecommendationConfig, cfg.PRESETS, "smoke", None, [f"model.kind={kind}"])
    hp = kt.HyperParameters()
    trial = cfg.search_space(hp, base)
    assert tuned in hp.values and "model.embedding_dim" in hp.values
    assert trial.model.kind == kind and trial.data == base.data  # only tuned keys change


def test_ids_with_leading_zeros_stay_distinct_and_a_non_utf8_file_is_refused(tmp_path):
    from deepsuite.pipelines.recommendation.ratings import read_csv

    table = tmp_path / "ratings.csv"
    table.write_text("user,item,rating\n007,1,5\n7,1,1\n7,2,3\n", encoding="utf-8")
    ratings = read_csv(table)
    assert sorted(set(ratings.users.tolist())) == ["007", "7"]  # two users, not one merged "7"
    latin = tmp_path / "latin.csv"
    latin.write_bytes("user,item,rating\nJos\xe9,1,5\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin.csv: line 2, byte 20: b'\\xe9' is not valid utf-8.*data.encoding"):
        read_csv(latin)
    assert read_csv(latin, "latin-1").users.tolist() == ["José"]
