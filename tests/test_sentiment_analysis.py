"""Sentiment analysis end to end through the real CLI: VADER movie sentences, real sqlite MLflow store."""
from __future__ import annotations

import csv
import io
import json

import mlflow
import numpy as np
import pytest

from deepsuite.common.errors import DataError
from tests.support.cli import run_cli
from tests.support.mlflow_models import (answer_as_served, assert_pyfunc_confined, load_pyfunc, logged_model,
                                         model_file)
from tests.support.serving import assert_confined, json_lines, same_answers, scoring_server, without
from tests.support.smoke_runs import shared_smoke_run

SMOKE = ["run", "sentiment-analysis", "--preset", "smoke"]


@pytest.fixture(scope="module")
def vader_available():
    """Only the tests that read VADER's sentences ask for it: the CSV, architecture and n-gram tests need no
    download and run offline."""
    from deepsuite.pipelines.sentiment_analysis.data import load_vader

    try:
        load_vader("movie_reviews")  # fills the session cache once, so the CLI runs below start offline
    except DataError as exc:
        pytest.skip(f"vaderSentiment sdist unavailable: {exc}")


def only_run(folder):
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{folder}/mlruns/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("sentiment-analysis").experiment_id])
    assert len(runs) == 1
    return client, runs[0]


@pytest.fixture(scope="module")
def tf_run(tmp_path_factory, vader_available):
    return shared_smoke_run("sentiment-analysis", tmp_path_factory)  # train.learning_rate=0.005


def test_run_records_metrics_report_and_split(tf_run):
    folder, result = tf_run
    client, run = only_run(folder)
    assert run.info.status == "FINISHED" and run.info.run_name.startswith("ngram-smoke-")
    metrics, params = run.data.metrics, run.data.params
    for name in ("test_accuracy", "test_roc_auc", "test_f1", "test_macro_f1", "test_log_loss"):
        assert 0 <= metrics[name] <= (1 if name != "test_log_loss" else 10), name
    assert metrics["test_accuracy"] > 0.55 and metrics["test_roc_auc"] > 0.6  # chance is 0.5
    assert params["data.size.train"] == "1500" and len(params["data.digest"]) == 16
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")] == [1, 2]
    assert run.inputs.dataset_inputs[0].dataset.name == "movie_reviews"
    artifacts = lambda path=None: {a.path for a in client.list_artifacts(run.info.run_id, path)}  # noqa: E731
    assert {"plots/learning_curves.png", "plots/confusion_matrix.png", "plots/roc_curve.png"} <= artifacts("plots")
    assert {"tables/most_confident_errors.csv", "tables/most_confident_errors.html"} <= artifacts("tables")
    assert {"export/model.keras", "export/deepsuite.json", "export/vocabulary.txt"} <= artifacts("export")
    model = logged_model(folder, run)  # the MLflow model: a LoggedModel, its test metrics linked to it
    assert "MLmodel" in {a.path for a in client.list_logged_model_artifacts(model.model_id)}
    assert {m.key for m in model.metrics} >= {"test_accuracy", "test_roc_auc"}
    local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="tables",
                                                tracking_uri=f"sqlite:///{folder}/mlruns/mlflow.db")
    rows = list(csv.DictReader(io.open(f"{local}/most_confident_errors.csv", encoding="utf-8")))
    assert rows and rows[0]["text"] and rows[0]["true"] != rows[0]["predicted"]
    assert float(rows[0]["confidence"]) >= float(rows[-1]["confidence"]) >= 0.5
    report = (folder / "mlruns" / "artifacts").rglob("report.html").__next__().read_text(encoding="utf-8")
    assert "rated exactly 0 dropped" in report and f"digest {params['data.digest']}" in report


def test_predict_strings_a_file_and_an_empty_string(tf_run, tmp_path):
    folder, _ = tf_run
    _, run = only_run(folder)
    texts = tmp_path / "reviews.txt"
    texts.write_text("A moving, beautifully shot film.\n\nDull and lifeless.\n", encoding="utf-8")
    result = run_cli(["predict", run.info.run_id, "A gorgeous, witty delight.", "", "--files", str(texts), "--json"],
                     cwd=folder)
    assert result.code == 0, result.err[-2000:]
    answers = [json.loads(line) for line in result.out.strip().splitlines()]
    assert [a["input"] for a in answers] == ["[1]", "[2]", "reviews.txt:1", "reviews.txt:3"]
    assert answers[1]["label"] is None and answers[1]["note"] == "empty text" and "summary" in answers[1]
    for answer in answers[:1] + answers[2:]:
        assert answer["label"] in ("negative", "positive") and 0.5 <= answer["probability"] <= 1
        assert answer["summary"].startswith(f"{answer['input']}: {answer['label']} (")
    assert answers[0]["summary"].endswith("'A gorgeous, witty delight.'")


def test_served_predictions_equal_the_cli_on_the_same_texts(tf_run, tmp_path):
    folder, _ = tf_run
    _, run = only_run(folder)
    texts = ["A gorgeous, witty delight.", "Dull, lifeless and far too long.", ""]
    with scoring_server(run.info.run_id, folder) as server:  # starts while the CLI runs
        cli = run_cli(["predict", run.info.run_id, *texts, "--json"], cwd=folder)
        assert cli.code == 0, cli.err[-2000:]
        expected = json_lines(cli.out)
        served = server.post({"inputs": texts})
        assert_confined(server, folder, tmp_path, lambda path: [{"inputs": [path]}, {"inputs": ["ok"], "files": [path]}])
    assert [a["input"] for a in expected] == ["[1]", "[2]", "[3]"] and expected[2]["label"] is None
    assert same_answers(without(served), without(expected)), (served, expected)


def test_logged_mlflow_model_answers_texts_like_the_cli(tf_run, tmp_path, monkeypatch):
    """The logged MLflow model takes the texts themselves (`{"inputs": ["great film", ...]}`), as
    `mlflow models serve` passes them, and answers what `deepsuite predict --json` prints; a text that names
    a file is classified as a text, never opened, and nothing is written here."""
    folder, _ = tf_run
    _, run = only_run(folder)
    texts = ["A gorgeous, witty delight.", "Dull, lifeless and far too long.", ""]
    cli = run_cli(["predict", run.info.run_id, *texts, "--json"], cwd=folder)
    assert cli.code == 0, cli.err[-2000:]
    expected = json_lines(cli.out)
    model = load_pyfunc(folder, f"runs:/{run.info.run_id}/model", monkeypatch)
    assert [p.name for p in model.metadata.get_params_schema().params] == ["command"]  # `files` is the CLI's only
    served = answer_as_served(model, {"inputs": texts})
    assert same_answers(without(served), without(expected)), (served, expected)
    [one] = model.predict("A gorgeous, witty delight.")
    assert same_answers(without([one]), without(expected[:1]))
    example = json.loads(model_file(folder, run, "input_example.json", tmp_path / "model").read_text())["inputs"]
    assert len(example) == 2 and all(isinstance(text, str) and text for text in example)  # two test sentences
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    assert_pyfunc_confined(model, cwd, tmp_path, lambda path: [{"inputs": [path]}, {"inputs": ["ok"],
                                                                                    "params": {"files": [path]}}],
                           monkeypatch, refused=False)


def test_predict_on_non_utf8_file_is_one_clear_line(tf_run, tmp_path):
    folder, _ = tf_run
    _, run = only_run(folder)
    bad = tmp_path / "latin.txt"
    bad.write_bytes("Na\xefve and charming\n".encode("latin-1"))
    result = run_cli(["predict", run.info.run_id, "--files", str(bad)], cwd=folder)
    assert result.code == 2 and "Traceback" not in result.err
    assert [line for line in result.err.splitlines() if line.startswith("error")] == [
        f"error: {bad}: line 1, byte 2: b'\\xef' is not valid utf-8 (invalid continuation byte); re-save the file "
        "as UTF-8 or set data.encoding (e.g. latin-1 or cp1252)"]


def test_csv_missing_column_fails_the_run_with_one_line(tmp_path):
    table = tmp_path / "reviews.csv"
    table.write_text("review,stars\nGreat,5\nAwful,1\n", encoding="utf-8")
    result = run_cli([*SMOKE, "--set", f"data.source=csv:{table}", "--set", "data.label_column=stars"], cwd=tmp_path,
                     backend="jax", hide_tensorflow=True)
    assert result.code == 2 and "Traceback" not in result.err
    assert result.err.strip().splitlines()[-1] == (
        f"error: {table}: no column 'text' (set data.text_column to one of: 'review', 'stars')")
    _, run = only_run(tmp_path)
    assert run.info.status == "FAILED"


# slow step: the default suite keeps the JAX-without-TensorFlow path of image classification and tuning
@pytest.mark.slow
def test_jax_without_tensorflow_trains_bigru_and_predicts(tmp_path, vader_available):
    result = run_cli([*SMOKE, "--set", "model.kind=bigru"], cwd=tmp_path, backend="jax", hide_tensorflow=True)
    assert result.code == 0, result.err[-3000:]
    _, run = only_run(tmp_path)
    assert run.info.status == "FINISHED" and run.data.tags["backend"] == "jax"
    # it learns on JAX: test accuracy 0.68 and ROC-AUC 0.74 here; the 300 test sentences are ~52% positive, so
    # always answering the majority class scores ~0.52, and chance ROC-AUC is 0.5
    assert run.data.metrics["test_accuracy"] > 0.6 and run.data.metrics["test_roc_auc"] > 0.65
    export = next((tmp_path / "mlruns" / "artifacts").rglob("export"))
    assert json.loads((export / "deepsuite.json").read_text())["metadata"]["model_input"] == "token_ids"
    answer = run_cli(["predict", str(export), "What a fine film.", "", "--json"], cwd=tmp_path, backend="jax",
                     hide_tensorflow=True)
    assert answer.code == 0, answer.err[-2000:]
    first, empty = [json.loads(line) for line in answer.out.strip().splitlines()]
    assert first["label"] in ("negative", "positive") and empty["label"] is None


@pytest.mark.parametrize("kind", ["cnn", "bigru", "transformer", "ngram"])
def test_each_architecture_trains_saves_and_reloads(kind, tmp_path):
    """Raw strings in (TensorFlow backend), same predictions after a .keras round trip."""
    import keras

    from deepsuite.pipelines.sentiment_analysis.config import SentimentAnalysisConfig
    from deepsuite.pipelines.sentiment_analysis.model import build_classifier
    from deepsuite.pipelines.sentiment_analysis.vectorize import Vectorizer, build_vocabulary, nb_log_ratios

    texts = ["a fine warm film", "dull and awful", "fine acting", "awful dull plot", "", "warm"] * 4
    labels = np.array([1, 0, 1, 0, 0, 1] * 4)
    config = SentimentAnalysisConfig.model_validate({"model": {"kind": kind, "vocab_size": 100, "sequence_length": 8,
                                                       "embedding_dim": 8, "filters": 4, "rnn_units": 4,
                                                       "ff_dim": 8, "num_heads": 2, "ngram_buckets": 1024,
                                                       "char_ngrams": 0}}).model
    vocabulary = build_vocabulary(texts, 100)
    ratios = nb_log_ratios(Vectorizer(vocabulary, 8)(texts), labels, config.ngrams, len(vocabulary), 1024)
    model = build_classifier(vocabulary, config, ratios)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    x = np.array(texts, dtype=object)
    model.fit(x, labels[:, None].astype("float32"), epochs=1, batch_size=8, verbose=0)
    before = model.predict(x, verbose=0)
    assert before.shape == (len(texts), 1) and np.isfinite(before).all()
    model.save(tmp_path / "model.keras")
    after = keras.saving.load_model(tmp_path / "model.keras").predict(x, verbose=0)
    np.testing.assert_allclose(before, after, rtol=1e-5, atol=1e-6)


def test_character_ngrams_score_unseen_word_forms_and_survive_reload(tmp_path):
    """model.char_ngrams: a word missing from the vocabulary still counts through its character n-grams."""
    import keras

    from deepsuite.pipelines.sentiment_analysis.config import SentimentAnalysisConfig
    from deepsuite.pipelines.sentiment_analysis.model import build_classifier
    from deepsuite.pipelines.sentiment_analysis.model import char_ngram_ratios
    from deepsuite.pipelines.sentiment_analysis.vectorize import Vectorizer, build_vocabulary, nb_log_ratios

    texts = ["a wonderful warm film", "dreadful and dull", "wonderful acting", "dreadful plot", "warm", "dull"] * 4
    labels = np.array([1, 0, 1, 0, 1, 0] * 4)
    config = SentimentAnalysisConfig.model_validate({"model": {"vocab_size": 100, "sequence_length": 8, "ngrams": 1,
                                                       "ngram_buckets": 1024, "char_ngrams": 4,
                                                       "char_vocab_size": 2000}}).model
    vocabulary = build_vocabulary(texts, 100)
    ratios = nb_log_ratios(Vectorizer(vocabulary, 8)(texts), labels, 1, len(vocabulary), 1024)
    char_vocabulary, char_ratios = char_ngram_ratios(texts, labels, config)
    assert len(char_vocabulary) + 1 == char_ratios.shape[0] and char_ratios[0] == 0  # [UNK] never sways
    model = build_classifier(vocabulary, config, ratios, char_vocabulary, char_ratios)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy")
    model.fit(np.array(texts, dtype=object), labels[:, None].astype("float32"), epochs=3, batch_size=8, verbose=0)
    # "wonderfully" and "dreadfully" are not in the vocabulary: word features alone would score both the same
    probe = np.array(["wonderfully", "dreadfully", "wonderful", "dreadful"], dtype=object)
    before = model.predict(probe, verbose=0).reshape(-1)
    assert before[0] > 0.5 > before[1] and before[2] > 0.5 > before[3]
    model.save(tmp_path / "model.keras")
    after = keras.saving.load_model(tmp_path / "model.keras").predict(probe, verbose=0).reshape(-1)
    np.testing.assert_allclose(before, after, rtol=1e-5, atol=1e-6)
