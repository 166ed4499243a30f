"""Long checks of `deepsuite tune`: resume after SIGKILL, failing trials and memory, distributed search."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import keras
import mlflow
import numpy as np
import pytest

from tests.support.cli import REPO, run_cli, wait_while_running
from tests.support.data import needs_fashion_mnist
from tests.test_tuning import TINY, client_for, runs_of

pytestmark = [pytest.mark.slow, needs_fashion_mnist]


def start_cli(args, cwd, log, extra_env=None):
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO),
           **(extra_env or {})}
    return subprocess.Popen([sys.executable, "-m", "deepsuite.app.cli", *args], cwd=cwd, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def wait_all_succeed(processes: dict, logs: dict, timeout: float) -> None:
    """Wait until every process has exited 0; fail at once, with its output, as soon as one exits otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        codes = {name: process.poll() for name, process in processes.items()}
        for name, code in codes.items():
            if code not in (None, 0):
                raise AssertionError(f"{name} exited with code {code}:\n{logs[name].read_text()[-4000:]}")
        if all(code == 0 for code in codes.values()):
            return
        if time.monotonic() > deadline:
            running = [name for name, code in codes.items() if code is None]
            raise AssertionError(f"still running after {timeout:.0f} s: {', '.join(running)}\n" + "\n".join(
                f"--- {name}:\n{logs[name].read_text()[-2000:]}" for name in running))
        time.sleep(0.5)


EPOCHS = 6


def test_sigkill_mid_trial_then_the_same_command_resumes(tmp_path):
    # Six epochs of 1,000 images without early stopping: trial 1 is "part-way" for five epochs (several
    # seconds), a window the 0.1 s poll below cannot miss; with three 300-image epochs it once ran through
    # the whole window between two polls on an idle machine and the test waited for nothing.
    args = ["tune", "image-classification", "--tuner", "random", "--max-trials", "3", "--max-epochs", str(EPOCHS),
            *TINY, "--set", "data.max_train_samples=1000", "--set", "train.early_stopping_patience=0"]

    def trial_one_mid_way():
        try:
            runs = [r for r in runs_of(tmp_path, "trial") if r.data.tags["deepsuite.trial_id"] == "1"]
            logged = len(client_for(tmp_path).get_metric_history(runs[0].info.run_id, "loss")) if runs else 0
        except Exception:  # noqa: BLE001 - the store is being created
            return False
        return 1 <= logged < EPOCHS

    log_path = tmp_path / "first.log"
    with open(log_path, "w") as log:
        first = start_cli(args, tmp_path, log)
        try:
            wait_while_running(trial_one_mid_way, first, 600, "trial 1 part-way through",
                               lambda: log_path.read_text()[-3000:])
        finally:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    before = {r.data.tags["deepsuite.trial_id"]: r for r in runs_of(tmp_path, "trial")}
    assert before["0"].info.status == "FINISHED" and before["1"].info.status == "RUNNING"

    again = run_cli(args, cwd=tmp_path, timeout=3000)
    assert again.code == 0, again.err[-3000:]
    assert "resuming search" in again.out and "resumed: 1 trial(s) already ended" in again.out
    after = {r.data.tags["deepsuite.trial_id"]: r for r in runs_of(tmp_path, "trial")}
    assert sorted(after) == ["0", "1", "2"] and len(runs_of(tmp_path, "trial")) == 3  # no duplicate runs
    assert all(r.info.status == "FINISHED" for r in after.values())
    assert after["0"].info.end_time == before["0"].info.end_time  # the completed trial did not run again
    assert after["1"].info.run_id == before["1"].info.run_id and after["1"].data.tags["deepsuite.resumed"] == "true"
    steps = [m.step for m in client_for(tmp_path).get_metric_history(after["1"].info.run_id, "loss")]
    assert steps == list(range(1, EPOCHS + 1))  # resumed from its backup: every epoch logged once
    [parent] = runs_of(tmp_path, "search")
    assert parent.info.status == "FINISHED"
    assert [line.split()[1] for line in again.out.splitlines() if line.startswith("trial ")] == ["2/3", "3/3"]


def faulty_pipeline():
    """Image classification whose 3rd model diverges (NaN loss) and whose 5th is a bad combination."""
    from deepsuite.pipelines.image_classification.pipeline import ImageClassificationPipeline

    class FaultyImageClassification(ImageClassificationPipeline):
        builds = 0

        def build_model(self, config, splits):
            self.builds += 1
            model = super().build_model(config, splits)
            if self.builds == 5:
                raise ValueError("bad hyperparameter combination (test)")
            if self.builds == 3:
                poisoned = keras.Model(model.inputs, keras.layers.Rescaling(float("nan"))(model.outputs[0]))
                poisoned.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
                return poisoned
            return model

    pipeline = FaultyImageClassification()
    pipeline.name = "image-classification"   # what registry.get sets from the entry point's name
    return pipeline


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


def test_failing_trials_are_recorded_and_memory_does_not_grow(tmp_path, monkeypatch):
    from deepsuite.tuning.search import SearchOptions, run_search

    monkeypatch.chdir(tmp_path)
    # mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI; scope it to this test (later CLI runs inherit env)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    memory, ended = [], []

    def record(trial):
        ended.append(trial)
        memory.append(rss_mb())

    options = SearchOptions("image-classification", tuner="random", max_trials=12, max_epochs=1,
                            overrides=["data.max_train_samples=300", "data.max_test_samples=100"], preset="smoke", store=tmp_path / "mlruns")
    lines = []
    result = run_search(options, echo=lines.append, on_trial_end=record, pipeline=faulty_pipeline())
    assert len(ended) == 12 and sum(t["completed"] for t in ended) == 10
    assert [t["trial_id"] for t in ended] == [f"{i:02d}" for i in range(12)]  # Keras Tuner pads ids to 2 digits
    assert ended[2]["reason"].startswith("TrainingDiverged: training loss became nan")
    assert ended[4]["reason"] == "ValueError: bad hyperparameter combination (test)"
    failed_lines = [line for line in lines if "FAILED (" in line]
    assert len(failed_lines) == 2 and failed_lines[0].startswith("trial 3/12  FAILED (TrainingDiverged")
    trials = {r.data.tags["deepsuite.trial_id"]: r for r in runs_of(tmp_path, "trial")}
    assert trials["02"].info.status == "FAILED" and trials["02"].data.tags["deepsuite.trial_status"] == "failed"
    assert "TrainingDiverged" in trials["02"].data.tags["deepsuite.status_reason"]
    assert trials["04"].info.status == "FAILED" and result.best is not None
    assert all(trials[f"{i:02d}"].info.status == "FINISHED" for i in range(12) if i not in (2, 4))
    growth = memory[-1] - memory[3]
    print(f"RSS after each trial (MB): {[round(m) for m in memory]}; growth trials 4-12: {growth:.0f} MB")
    assert growth < 100, memory   # before the TensorFlow graph release: ~25 MB per trial, ~200 MB here


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_distributed_chief_and_two_workers_run_each_trial_once(tmp_path):
    port = free_port()
    args = ["tune", "image-classification", "--tuner", "random", "--max-trials", "4", "--max-epochs", "1", *TINY]
    logs = {name: open(tmp_path / f"{name}.log", "w") for name in ("chief", "worker-a", "worker-b")}
    token = {"DEEPSUITE_TUNE_TOKEN": "team-secret"}  # the chief refuses calls without it; workers send it
    chief = start_cli([*args, "--distributed", "chief", "--host", "127.0.0.1", "--port", str(port)], tmp_path,
                      logs["chief"], token)
    # the chief is up within seconds of its TensorFlow import; a worker that cannot reach it gives up
    workers = [start_cli([*args, "--distributed", "worker", "--chief", f"127.0.0.1:{port}", "--worker-id", name,
                          "--connect-timeout", "120"],
                         tmp_path, logs[name], token) for name in ("worker-a", "worker-b")]
    processes = {"chief": chief, "worker-a": workers[0], "worker-b": workers[1]}
    try:  # the whole search takes ~50 s on two idle cores
        wait_all_succeed(processes, {name: tmp_path / f"{name}.log" for name in logs}, timeout=300)
    finally:
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        for log in logs.values():
            log.close()
    output = {name: (tmp_path / f"{name}.log").read_text() for name in logs}
    trials = runs_of(tmp_path, "trial")
    ids = sorted(r.data.tags["deepsuite.trial_id"] for r in trials)
    assert ids == ["0", "1", "2", "3"]  # every trial ran, and was logged, exactly once
    assert all(r.info.status == "FINISHED" for r in trials)
    by_worker = {r.data.tags["deepsuite.tuner_id"] for r in trials}
    assert by_worker <= {"worker-a", "worker-b"} and len(by_worker) == 2, by_worker
    [parent] = runs_of(tmp_path, "search")
    assert parent.info.status == "FINISHED" and all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id
                                                   for r in trials)
    assert len([line for line in output["chief"].splitlines() if line.startswith("trial ")]) == 4
    assert "registered models:/image-classification@best" in output["chief"]
    assert mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db").get_model_version_by_alias(
        "image-classification", "best").run_id == parent.info.run_id


def test_hyperband_on_jax_without_tensorflow_warm_starts_trials(tmp_path):
    # max 3 epochs, factor 3: three 1-epoch trials, then the best continues from epoch 1 to 3 (capped at 4)
    result = run_cli(["tune", "image-classification", "--tuner", "hyperband", "--max-epochs", "3",
                      "--max-trials", "4", *TINY], cwd=tmp_path, backend="jax", hide_tensorflow=True, timeout=3000)
    assert result.code == 0, result.err[-3000:]
    [parent] = runs_of(tmp_path, "search")
    assert parent.info.status == "FINISHED" and parent.data.tags["backend"] == "jax"
    trials = {r.data.tags["deepsuite.trial_id"]: r for r in runs_of(tmp_path, "trial")}
    assert len(trials) == 4 and all(r.info.status == "FINISHED" for r in trials.values())
    continued = [r for r in trials.values() if r.data.params["hp.tuner/initial_epoch"] == "1"]
    assert len(continued) == 1 and continued[0].data.params["hp.tuner/epochs"] == "3"
    steps = [m.step for m in client_for(tmp_path).get_metric_history(continued[0].info.run_id, "loss")]
    assert steps == [2, 3]  # epochs numbered as Hyperband counts them, continuing the warm-started trial
    assert np.isfinite(parent.data.metrics["test_accuracy"])


def fleet_children(output: str) -> list[tuple[str, int]]:
    """(name, pid) of every process `tune --workers` started, from its "fleet: started NAME (pid N)" lines."""
    return [(m.group(1), int(m.group(2))) for m in re.finditer(r"^fleet: started (\S+) \(pid (\d+)\)$", output, re.M)]


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, dead but not yet reaped, does not count)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


FLEET = ["tune", "image-classification", "--tuner", "random", "--max-epochs", "1", *TINY, "--workers", "2"]


def test_tune_workers_runs_each_trial_once_under_one_parent_and_leaves_no_process(tmp_path):
    # one command: a chief on a free loopback port, two workers, a fresh token; ~80 s on two busy cores
    result = run_cli([*FLEET, "--max-trials", "4"], cwd=tmp_path, timeout=600)
    assert result.code == 0, result.err[-3000:] + result.out[-3000:]
    trials = runs_of(tmp_path, "trial")
    assert sorted(r.data.tags["deepsuite.trial_id"] for r in trials) == ["0", "1", "2", "3"]  # each once
    assert all(r.info.status == "FINISHED" for r in trials)
    [parent] = runs_of(tmp_path, "search")
    assert parent.info.status == "FINISHED"
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in trials)
    assert {r.data.tags["deepsuite.tuner_id"] for r in trials} == {"worker-1", "worker-2"}
    children = fleet_children(result.out)
    assert [name for name, _ in children] == ["chief", "worker-1", "worker-2"]
    assert not [c for c in children if alive(c[1])], children  # nothing left running
    lines = result.out.splitlines()
    assert len([line for line in lines if line.startswith("chief    | trial ")]) == 4  # prefixed, streamed
    assert any(line.startswith("worker-1 | worker-1: joined search") for line in lines)
    assert "chief    | registered models:/image-classification@best" in result.out
    assert "fleet: search finished; chief and workers (worker-1, worker-2) have exited" in result.out
    assert "DEEPSUITE_TUNE_TOKEN fresh and random" in result.out
    if "CUDA_VISIBLE_DEVICES" not in os.environ:
        assert "fleet: no GPU visible: nothing is pinned" in result.out or "fleet: worker-1 on GPU" in result.out


def test_tune_workers_reports_a_dead_worker_and_sigterm_stops_every_process(tmp_path):
    log_path = tmp_path / "fleet.log"
    output = lambda: log_path.read_text()  # noqa: E731
    with open(log_path, "w") as log:
        fleet = start_cli([*FLEET, "--max-trials", "20", "--max-epochs", "3"], tmp_path, log)
        try:
            wait_while_running(lambda: output().count(": joined search") == 2, fleet, 300, "both workers joined",
                               lambda: output()[-3000:])
            [worker_2] = [pid for name, pid in fleet_children(output()) if name == "worker-2"]
            os.kill(worker_2, signal.SIGKILL)  # a worker dies mid-search: reported, started again once
            wait_while_running(lambda: len(fleet_children(output())) == 4, fleet, 60, "worker-2 started again",
                               lambda: output()[-3000:])
            fleet.send_signal(signal.SIGTERM)  # to the supervisor only (its own session), as `kill` would
            code = fleet.wait(180)
        finally:
            if fleet.poll() is None:
                os.killpg(fleet.pid, signal.SIGKILL)
                fleet.wait()
    text = output()
    assert code == 130, text[-3000:]
    assert "fleet: worker-2 exited with code -9 (its output is above); starting it again under the same id" in text
    children = fleet_children(text)
    assert [name for name, _ in children] == ["chief", "worker-1", "worker-2", "worker-2"]
    assert not [c for c in children if alive(c[1])], children  # SIGTERM left no chief and no worker behind
    assert "fleet: interrupted; stopping the chief and the workers" in text
    assert "did not stop within" not in text, text[-4000:]  # each left on SIGINT, none needed SIGKILL
    [parent] = runs_of(tmp_path, "search")
    assert parent.info.status == "KILLED", text[-4000:]
