"""`deepsuite tune` end to end through the real CLI on a Fashion-MNIST subset, real sqlite MLflow store."""
from __future__ import annotations

import json
import socket

import pytest
from PIL import Image

from deepsuite.app import registry
from deepsuite.common.data import labeled_images
from tests.support.data import needs_fashion_mnist
from tests.support.cli import run_cli
from tests.support.mlflow_models import load_pyfunc
from tests.support.store import client_for

TINY = ["--preset", "smoke", "--set", "data.max_train_samples=300", "--set", "data.max_test_samples=100"]
SEARCH = ["tune", "image-classification", "--tuner", "random", "--max-trials", "2", "--max-epochs", "1", *TINY,
          "--set", "train.mixed_precision=true"]  # the parent run records the precision its trials compute in


def runs_of(folder, kind=None):
    client = client_for(folder)
    experiment = client.get_experiment_by_name("image-classification")
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    return [r for r in runs if kind is None or r.data.tags.get("deepsuite.kind") == kind]


def last_line(text):
    return text.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tune-random")
    result = run_cli(SEARCH, cwd=folder)
    assert result.code == 0, result.err[-3000:]
    return folder, result


@needs_fashion_mnist
def test_search_is_one_parent_run_with_a_child_run_per_trial(search):
    folder, result = search
    [parent] = runs_of(folder, "search")
    trials = runs_of(folder, "trial")
    assert parent.info.status == "FINISHED" and len(trials) == 2
    params, tags, metrics = parent.data.params, parent.data.tags, parent.data.metrics
    assert params["search.tuner"] == "random" and params["search.objective"] == "val_accuracy"
    assert params["search.max_trials"] == "2" and params["search.max_epochs"] == "1"
    assert "model.base_width" in json.loads(params["search.space"])
    assert 0 <= metrics["best_val_accuracy"] <= 1 and "test_accuracy" in metrics
    client = client_for(folder)
    assert [m.step for m in client.get_metric_history(parent.info.run_id, "best_val_accuracy")][:2] == [1, 2]
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"best_config.yaml", "search_space.json", "export"} <= artifacts
    [model] = [client.get_logged_model(o.model_id) for o in parent.outputs.model_outputs]  # the best trial's model
    assert model.name == "model" and {m.key for m in model.metrics} >= {"test_accuracy"}
    best_yaml = client.download_artifacts(parent.info.run_id, "best_config.yaml", str(folder))
    assert "learning_rate" in open(best_yaml).read()
    for trial in trials:
        assert trial.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert trial.info.status == "FINISHED" and trial.data.tags["deepsuite.trial_status"] == "completed"
        assert {"hp.model.dropout", "hp.train.learning_rate", "model.dropout"} <= trial.data.params.keys()
        assert [m.step for m in client.get_metric_history(trial.info.run_id, "val_accuracy")] == [1]
        assert "best_val_accuracy" in trial.data.metrics and trial.data.metrics["fit_seconds"] > 0
    assert {t.data.tags["deepsuite.trial_id"] for t in trials} == {"0", "1"}
    assert tags["deepsuite.best_trial"] in {"0", "1"}
    if tags["device"] == "cpu":
        assert tags["precision_policy"] == "mixed_bfloat16" and tags["cpu_bfloat16"] in {"native", "emulated"}
    # progress: one line per trial with i/N, the hyperparameters, objective, best so far, elapsed, ETA
    lines = [line for line in result.out.splitlines() if line.startswith("trial ")]
    assert [line.split()[1] for line in lines] == ["1/2", "2/2"]
    assert all("val_accuracy=" in line and "best=" in line and "model.dropout=" in line and "ETA" in line
               for line in lines)


@needs_fashion_mnist
def test_best_model_is_registered_and_predicts_by_models_uri(search, tmp_path, monkeypatch):
    folder, result = search
    [parent] = runs_of(folder, "search")
    version = client_for(folder).get_model_version_by_alias("image-classification", "best")
    assert version.run_id == parent.info.run_id
    [output] = parent.outputs.model_outputs  # the registered version is the parent run's logged model
    assert version.source == f"models:/{output.model_id}"
    best = load_pyfunc(folder, "models:/image-classification@best", monkeypatch)  # as `mlflow models serve -m` loads it
    data = labeled_images.load("fashion_mnist")
    [answer] = best.predict([data.test_x[0, ..., 0]], params={"top": 2})
    assert answer["label"] in labeled_images.FASHION_MNIST_CLASSES and len(answer["top"]) == 2
    assert "registered models:/image-classification@best" in result.out
    Image.fromarray(data.test_x[0, ..., 0]).save(tmp_path / "item.png")
    answer = run_cli(["predict", "models:/image-classification@best", str(tmp_path / "item.png"), "--json"],
                     cwd=folder)
    assert answer.code == 0, answer.err[-2000:]
    assert json.loads(answer.out.strip().splitlines()[-1])["label"] in labeled_images.FASHION_MNIST_CLASSES
    missing = run_cli(["predict", "models:/image-classification@nope", str(tmp_path / "item.png")], cwd=folder)
    assert missing.code == 2 and "no registered model models:/image-classification@nope" in last_line(missing.err)


@needs_fashion_mnist
def test_rerunning_a_finished_search_runs_nothing_again(search):
    folder, _ = search
    again = run_cli(SEARCH, cwd=folder)
    assert again.code == 0, again.err[-2000:]
    assert "already finished" in again.out
    assert len(runs_of(folder, "trial")) == 2 and len(runs_of(folder, "search")) == 1


@needs_fashion_mnist
def test_hyperband_starts_from_the_recipe_and_continues_trials_along_their_schedule(tmp_path):
    # max 3 epochs, factor 3: three 1-epoch trials, then the best continues from epoch 1 to 3
    result = run_cli(["tune", "image-classification", "--tuner", "hyperband", "--max-epochs", "3",
                      "--max-trials", "4", *TINY], cwd=tmp_path)
    assert result.code == 0, result.err[-3000:]
    assert "Skipping variable loading for optimizer" not in result.err
    trials = {r.data.tags["deepsuite.trial_id"]: r for r in runs_of(tmp_path, "trial")}
    # the first trial is the smoke preset's recipe wherever the space allows its value
    first = trials["0"].data.params
    assert (first["hp.train.learning_rate"], first["hp.train.batch_size"], first["hp.model.dropout"]) == \
        ("0.003", "64", "0.3")
    [continued] = [r for r in trials.values() if r.data.params["hp.tuner/initial_epoch"] == "1"]
    past = trials[continued.data.params["hp.tuner/trial_id"]]
    client = client_for(tmp_path)
    rate = {run.info.run_id: {m.step: m.value for m in client.get_metric_history(run.info.run_id, "learning_rate")}
            for run in (past, continued)}
    # one cosine over the 3 max epochs: the continued trial carries on below where its past trial stopped
    # (a fresh optimizer would restart its own schedule near the peak rate)
    assert rate[past.info.run_id][1] > rate[continued.info.run_id][2] > rate[continued.info.run_id][3]
    assert 0.5 < rate[past.info.run_id][1] / float(past.data.params["hp.train.learning_rate"]) < 1


def test_unknown_tuner_is_one_line_and_fails_the_parent_run(tmp_path):
    result = run_cli([*SEARCH, "--tuner", "grid"], cwd=tmp_path)
    assert result.code == 2 and last_line(result.err) == "error: unknown tuner 'grid' (valid: random, bayesian, hyperband)"
    [parent] = runs_of(tmp_path, "search")
    assert parent.info.status == "FAILED"
    assert parent.data.tags["deepsuite.status_reason"] == "ConfigError: unknown tuner 'grid' (valid: random, bayesian, hyperband)"


@needs_fashion_mnist
@pytest.mark.parametrize("change, message, trials", [
    # the space is checked before any trial starts
    ({"fixes": ["train.batch_size=100"]}, "contradictory search space: train.batch_size=100 is pinned", 0),
    ({"overrides": ["model.widths=[8]"]}, "--set model.widths=[8] is overridden by image-classification's search space",
     0),
    # the objective is checked after the first trial's first epoch: that trial fails, no other starts
    ({"objective": "val_auc"}, "unknown objective 'val_auc': image-classification reports accuracy, loss, val_accuracy",
     1),
])
def test_bad_search_fails_the_parent_run_with_the_reason(workdir, monkeypatch, change, message, trials):
    from deepsuite.common.errors import ConfigError
    from deepsuite.tuning.search import SearchOptions, run_search

    # mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI; scope it to this test (later CLI runs inherit env)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workdir}/mlruns/mlflow.db")

    options = SearchOptions("image-classification", tuner="random", max_trials=1, max_epochs=1, preset="smoke",
                            store=workdir / "mlruns")
    options.overrides = ["data.max_train_samples=300", "data.max_test_samples=100", *change.pop("overrides", [])]
    for key, value in change.items():
        setattr(options, key, value)
    with pytest.raises(ConfigError) as error:
        run_search(options, echo=lambda line: None, pipeline=registry.get("image-classification"))
    assert message in str(error.value)
    [parent] = runs_of(workdir, "search")
    assert parent.info.status == "FAILED" and message in parent.data.tags["deepsuite.status_reason"]
    statuses = [run.info.status for run in runs_of(workdir, "trial")]
    assert statuses == ["FAILED"] * trials, statuses


def test_unreachable_chief_is_retried_then_a_clear_error(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = run_cli([*SEARCH, "--distributed", "worker", "--chief", f"127.0.0.1:{port}",
                      "--connect-timeout", "3"], cwd=tmp_path)
    assert result.code == 2
    assert last_line(result.err).startswith(f"error: cannot reach the tuning chief at 127.0.0.1:{port} after")
    assert "retrying in" in result.out  # backoff between attempts
    [parent] = runs_of(tmp_path, "search")
    assert parent.info.status == "FAILED" and "cannot reach the tuning chief" in parent.data.tags["deepsuite.status_reason"]


@needs_fashion_mnist
def test_search_on_jax_without_tensorflow(tmp_path):
    # the smoke preset's 1,200 images for 2 epochs: TINY's 300 images give 5 steps an epoch, too few for the
    # BatchNorm statistics, and its trial scored 0.1 on validation (chance) after 3 epochs
    result = run_cli(["tune", "image-classification", "--tuner", "random", "--max-trials", "1", "--max-epochs", "2",
                      "--preset", "smoke"], cwd=tmp_path, backend="jax", hide_tensorflow=True)
    assert result.code == 0, result.err[-3000:]
    [parent] = runs_of(tmp_path, "search")
    [trial] = runs_of(tmp_path, "trial")
    assert parent.info.status == "FINISHED" and parent.data.tags["backend"] == "jax"
    assert trial.info.status == "FINISHED" and trial.data.tags["deepsuite.trial_status"] == "completed"
    # the search learns on JAX: its trial reached val accuracy 0.69 and the best model test accuracy 0.72 here;
    # chance is 0.1
    assert trial.data.metrics["best_val_accuracy"] > 0.4 and parent.data.metrics["test_accuracy"] > 0.5


@needs_fashion_mnist
def test_a_chief_with_a_token_refuses_calls_and_workers_without_it(tmp_path):
    import os
    import subprocess
    import sys
    import time

    import grpc
    from keras_tuner.src import protos

    from tests.support.cli import REPO

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO),
           "DEEPSUITE_TUNE_TOKEN": "s3cret-token"}
    chief = subprocess.Popen([sys.executable, "-m", "deepsuite.app.cli", *SEARCH, "--distributed", "chief",
                              "--port", str(port)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=120)
        stub = protos.get_service_grpc().OracleStub(channel)
        request = protos.get_service().CreateTrialRequest(tuner_id="intruder")
        with pytest.raises(grpc.RpcError) as refused:  # a client without the token gets no trial
            stub.CreateTrial(request, timeout=30)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as wrong:
            stub.CreateTrial(request, timeout=30, metadata=[("authorization", "Bearer guess")])
        assert wrong.value.code() == grpc.StatusCode.UNAUTHENTICATED
        space = stub.GetSpace(protos.get_service().GetSpaceRequest(), timeout=30,
                              metadata=[("authorization", "Bearer s3cret-token")])
        assert len(space.hyperparameters.ListFields()) > 0  # the token opens the oracle

        worker = run_cli([*SEARCH, "--distributed", "worker", "--chief", f"127.0.0.1:{port}"], cwd=tmp_path,
                         env={"DEEPSUITE_TUNE_TOKEN": ""})
        assert worker.code == 2, worker.err[-2000:]
        assert last_line(worker.err) == (f"error: the chief at 127.0.0.1:{port} refused this worker: set "
                                         "DEEPSUITE_TUNE_TOKEN to the chief's token")
        assert chief.poll() is None  # the chief still waits for real workers
        trials = runs_of(tmp_path, "trial")
        assert trials == [], [t.info.run_name for t in trials]
    finally:
        chief.kill()
        output = chief.communicate()[0]
        time.sleep(0.1)
    assert "s3cret-token" not in output
