"""Recommendation end to end through the real CLI: MovieLens 100K subset, real sqlite MLflow store, `recommend`."""
from __future__ import annotations

import json

import numpy as np
import pytest

from deepsuite.pipelines.recommendation.ratings import load_ratings
from tests.support.cli import run_cli
from tests.support.mlflow_models import (answer_as_served, assert_pyfunc_confined, load_pyfunc, logged_model,
                                         model_file)
from tests.support.serving import assert_confined, json_lines, same_answers, scoring_server, without
from tests.support.store import only_run
from tests.support.smoke_runs import shared_smoke_run

SMOKE = ["run", "recommendation", "--preset", "smoke"]


def artifact_text(client, run_id, path):
    with open(client.download_artifacts(run_id, path), encoding="utf-8") as handle:
        return handle.read()


@pytest.fixture(scope="module")
def movielens():
    return load_ratings("movielens-100k")


@pytest.fixture(scope="module")
def mf_run(tmp_path_factory):
    return shared_smoke_run("recommendation", tmp_path_factory)  # SMOKE as it is


def test_mf_run_is_recorded_with_rating_and_ranking_metrics(mf_run):
    folder, result = mf_run
    client, run = only_run(folder, "recommendation")
    assert run.info.status == "FINISHED" and run.info.run_name.startswith("mf-random-smoke-")
    assert "done: recommendation" in result.out
    m = run.data.metrics
    for name in ("rmse", "mae", "global_mean_rmse", "biases_rmse", "hit_rate_at_10", "recall_at_10", "ndcg_at_10",
                 "coverage_at_10", "popularity_ndcg_at_10", "item_knn_ndcg_at_10", "ease_ndcg_at_10"):
        assert f"test_{name}" in m, name
    assert m["test_rmse"] < m["test_global_mean_rmse"]  # it learned something in 2 tiny epochs
    assert 0 <= m["test_ndcg_at_10"] <= 1 and 0 < m["test_coverage_at_10"] <= 1
    assert [p.step for p in client.get_metric_history(run.info.run_id, "val_rmse")] == [1, 2]
    assert run.data.params["data.split"] == "random" and run.data.params["model.side_features"] == "True"
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/learning_curves.png", "plots/ranking_vs_baselines.png"} <= plots
    examples = artifact_text(client, run.info.run_id, "tables/example_recommendations.md")
    assert examples.startswith("| user |") and "(19" in examples  # titles with their years
    comparison = artifact_text(client, run.info.run_id, "tables/ranking_vs_baselines.md")
    assert "most popular" in comparison and "EASE" in comparison
    export = {a.path for a in client.list_artifacts(run.info.run_id, "export")}
    assert {"export/model.keras", "export/recommendation.json", "export/deepsuite.json"} <= export
    model = logged_model(folder, run)  # the MLflow model: a LoggedModel, its test metrics linked to it
    assert {"MLmodel", "input_example.json"} <= {a.path for a in client.list_logged_model_artifacts(model.model_id)}
    assert {"test_rmse", "test_ndcg_at_10"} <= {m.key for m in model.metrics}


def test_recommend_titles_exclude_what_the_user_rated(mf_run, movielens):
    folder, _ = mf_run
    _, run = only_run(folder, "recommendation")
    result = run_cli(["recommend", run.info.run_id, "--user", "1", "--top", "7", "--json"], cwd=folder)
    assert result.code == 0, result.err[-2000:]
    answers = [json.loads(line) for line in result.out.strip().splitlines()]
    assert [a["rank"] for a in answers] == list(range(1, 8))
    rated = set(movielens.items[movielens.users == 1].tolist())
    assert not rated & {a["item_id"] for a in answers}
    assert all(a["title"] == movielens.titles[a["item_id"]] and a["fallback"] is None for a in answers)
    assert all(1 <= a["score"] <= 5 for a in answers)  # predicted ratings, clipped to the scale
    header, first = answers[0]["summary"].splitlines()
    assert header.startswith("top 7 for user 1 (mf;") and "rated items excluded" in header
    assert first.startswith(" 1. " + answers[0]["title"])


def test_served_recommendations_equal_the_cli_for_the_same_user(mf_run, tmp_path):
    folder, _ = mf_run
    _, run = only_run(folder, "recommendation")
    with scoring_server(run.info.run_id, folder) as server:  # starts while the CLI runs
        cli = run_cli(["recommend", run.info.run_id, "--user", "42", "--top", "6", "--json"], cwd=folder)
        assert cli.code == 0, cli.err[-2000:]
        expected = json_lines(cli.out)
        served = server.post({"user": "42", "top": 6})
        assert_confined(server, folder, tmp_path, lambda path: [{"user": path}, {"users": path, "top": 3}])
    assert [a["rank"] for a in expected] == list(range(1, 7)) and expected[0]["fallback"] is None
    assert same_answers(without(served), without(expected)), (served, expected)


def test_logged_mlflow_model_recommends_for_user_ids_like_the_cli(mf_run, tmp_path, monkeypatch):
    """The logged MLflow model takes user ids as its rows and `top` as a param (`{"inputs": ["42"], "params":
    {"top": 6}}`), one recommendation list per user, what `deepsuite recommend --json` prints."""
    folder, _ = mf_run
    _, run = only_run(folder, "recommendation")
    cli = run_cli(["recommend", run.info.run_id, "--user", "42", "--top", "6", "--json"], cwd=folder)
    assert cli.code == 0, cli.err[-2000:]
    expected = json_lines(cli.out)
    model = load_pyfunc(folder, f"models:/{logged_model(folder, run).model_id}", monkeypatch)
    params = {p.name: (p.dtype.name, p.default) for p in model.metadata.get_params_schema().params}
    assert params == {"command": ("string", "recommend"), "top": ("long", 10)}
    served = answer_as_served(model, {"inputs": ["42"], "params": {"top": 6}})
    assert same_answers(without(served), without(expected)), (served, expected)
    as_number = answer_as_served(model, {"inputs": [42, "no-such-user"], "params": {"top": 6}})  # two users
    assert same_answers(without(as_number[:6]), without(expected)) and len(as_number) == 12
    assert as_number[6]["fallback"] is not None or "unknown" in as_number[6]["summary"]
    example = json.loads(model_file(folder, run, "input_example.json", tmp_path / "model").read_text())
    example, params = example["inputs"], example["params"]
    assert len(example) == 2 and params == {"top": 5}  # two test users' ids
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    assert_pyfunc_confined(model, cwd, tmp_path, lambda path: [{"inputs": [path]}, {"inputs": [path],
                                                                                    "params": {"top": 3}}],
                           monkeypatch, refused=False)


def test_unknown_user_gets_popular_items_and_is_told(mf_run):
    folder, _ = mf_run
    export = next((folder / "mlruns" / "artifacts").rglob("export/model.keras")).parent
    result = run_cli(["recommend", str(export), "--user", "no-such-user", "--top", "3"], cwd=folder)
    assert result.code == 0, result.err[-2000:]
    lines = result.out.strip().splitlines()
    assert lines[0] == "user no-such-user is unknown: most popular items instead"
    assert len(lines) == 4 and "rated by" in lines[1]


def test_bad_ratings_file_is_one_clear_line(tmp_path):
    bad = tmp_path / "ratings.csv"
    bad.write_text("user,item,rating\n1,2,5\n1,3,lots\n", encoding="utf-8")
    result = run_cli([*SMOKE, "--set", f"data.source=csv:{bad}"], cwd=tmp_path)
    assert result.code == 2 and "Traceback" not in result.err
    errors = [line for line in result.err.splitlines() if line.startswith("error:")]  # (TF may log before it)
    assert errors == [f"error: {bad} line 3: rating 'lots' is not a number"]
    assert result.err.strip().splitlines()[-1] == errors[0]
    _, run = only_run(tmp_path, "recommendation")
    assert run.info.status == "FAILED"


# slow step: the default suite keeps the JAX-without-TensorFlow path of image classification and tuning
@pytest.mark.slow
def test_two_tower_on_jax_without_tensorflow(tmp_path, movielens):
    result = run_cli([*SMOKE, "--set", "model.kind=two_tower", "--set", "data.split=temporal", "--set",
                      "train.epochs=6"], cwd=tmp_path, backend="jax", hide_tensorflow=True)
    assert result.code == 0, result.err[-3000:]
    client, run = only_run(tmp_path, "recommendation")
    assert run.info.status == "FINISHED" and run.data.tags["backend"] == "jax"
    m = run.data.metrics
    assert "test_rmse" not in m and 0 <= m["test_ndcg_at_10"] <= 1
    assert m["test_hit_rate_at_10"] == pytest.approx(m["test_recall_at_10"])  # one held-out item per user
    # it learns on JAX: ten random unrated items would hit each user's held-out item with probability
    # 10 / (its unrated items + 1), ~0.008 here; the model hit 0.053 of the 150 users (8), popularity 0.040
    extras = json.loads(artifact_text(client, run.info.run_id, "export/recommendation.json"))
    n_items = len(extras["item_ids"])
    random_hit_rate = np.mean([10 / (n_items - len(rated) + 1) for rated in extras["rated"].values()])
    assert random_hit_rate < 0.01 and m["test_hit_rate_at_10"] > 3 * random_hit_rate
    answer = run_cli(["recommend", run.info.run_id, "--user", "196", "--top", "5", "--json"], cwd=tmp_path,
                     backend="jax", hide_tensorflow=True)
    assert answer.code == 0, answer.err[-2000:]
    items = [json.loads(line)["item_id"] for line in answer.out.strip().splitlines()]
    assert len(items) == 5 and not set(items) & set(movielens.items[movielens.users == 196].tolist())


@pytest.mark.slow
def test_csv_with_string_ids_duplicates_and_titles_with_neumf(tmp_path, movielens):
    """A user's own CSV: string ids (StringLookup inside the model), repeated rows, an items file for titles."""
    keep = movielens.users <= 80
    users, items = movielens.users[keep], movielens.items[keep]
    rows = [f"u{u},m{i},{r:g},{t}" for u, i, r, t in zip(users, items, movielens.ratings[keep], movielens.timestamps[keep])]
    rows += [f"u{users[0]},m{items[0]},1,{int(movielens.timestamps.max()) + 1}"]  # a later duplicate wins
    ratings = tmp_path / "ratings.csv"
    ratings.write_text("user_id,item_id,rating,timestamp\n" + "\n".join(rows) + "\n", encoding="utf-8")
    catalogue = tmp_path / "items.csv"
    catalogue.write_text("item,title,genres\n" + "\n".join(
        f'm{i},"{movielens.titles[i]}",{"|".join(movielens.genres[i])}' for i in np.unique(items)) + "\n", encoding="utf-8")
    result = run_cli([*SMOKE, "--set", f"data.source=csv:{ratings}", "--set", f"data.items={catalogue}",
                      "--set", "model.kind=neumf"], cwd=tmp_path)
    assert result.code == 0, result.err[-3000:]
    client, run = only_run(tmp_path, "recommendation")
    assert run.info.status == "FINISHED" and "test_rmse" in run.data.metrics
    report = artifact_text(client, run.info.run_id, "report.html")
    assert "duplicates: 1 (user, item) pairs had 1 extra rows; kept the latest" in report
    answer = run_cli(["recommend", run.info.run_id, "--user", "u7", "--top", "3", "--json"], cwd=tmp_path)
    assert answer.code == 0, answer.err[-2000:]
    answers = [json.loads(line) for line in answer.out.strip().splitlines()]
    assert all(a["item_id"].startswith("m") and a["title"] == movielens.titles[int(a["item_id"][1:])] for a in answers)
