"""Reliability: resume after SIGKILL, failures recorded, concurrent runs, reproducibility, disk errors.

The process-level checks run the real `deepsuite` CLI on the tiny generated pipeline of
tests/support/synthetic.py, so they cost seconds and gate every CI run; what they check (the runner, the
tracker, the backup and the CLI's signal handling) is the same code every domain pipeline runs through.
"""
from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest

from deepsuite.common import runner
from deepsuite.common.config import RunConfig, resolve
from deepsuite.common.pipeline import DatasetInfo, Pipeline, Split, Splits
from deepsuite.common.runner import TrainingDiverged
from tests.support.cli import REPO, like_a_terminal, run_in_process, wait_while_running
from tests.support.synthetic import NAME as SYNTHETIC

SMOKE = ["run", SYNTHETIC, "--preset", "smoke"]
# ~1 s epochs on two cores: long enough to land a signal inside an epoch
LONGER = ["--set", "train.epochs=5", "--set", "data.train_samples=40000", "--set", "train.early_stopping_patience=0"]


def client(folder: Path) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{folder}/mlruns/mlflow.db")


def runs(folder: Path):
    c = client(folder)
    experiment = c.get_experiment_by_name(SYNTHETIC)
    return c.search_runs([experiment.experiment_id]) if experiment else []


def synthetic_cli(args: list[str], cwd: Path):
    """`deepsuite ARGS` with the synthetic pipeline registered, waited for."""
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "tests.support.synthetic", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    return proc


def start_cli(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "tests.support.synthetic", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=like_a_terminal)


def logged_epochs(folder: Path) -> int:
    """Epochs logged so far, read straight from the sqlite store (no MLflow client in the loop)."""
    db = folder / "mlruns" / "mlflow.db"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return con.execute("select count(*) from metrics where key='val_loss'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_resume_after_sigkill_mid_epoch(tmp_path):
    proc = start_cli([*SMOKE, *LONGER], tmp_path)
    wait_while_running(lambda: logged_epochs(tmp_path) >= 2, proc, 300, "two logged epochs",
                       lambda: proc.communicate()[1][-2000:])
    time.sleep(0.3)  # into the next epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (killed,) = runs(tmp_path)
    assert killed.info.status == "RUNNING"  # a killed process cannot say goodbye
    done_before = logged_epochs(tmp_path)
    assert 2 <= done_before < 5

    # a new run says how to continue the interrupted one (and runs as a run of its own)
    fresh = synthetic_cli([*SMOKE, "--set", "train.epochs=1"], cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert (f"note: run {killed.info.run_name} ({killed.info.run_id}) was interrupted; "
            f"continue it with --resume {killed.info.run_id} (or --resume last)") in fresh.stdout

    resumed = synthetic_cli([*SMOKE, "--resume", "last"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming run {killed.info.run_name}" in resumed.stdout

    run = client(tmp_path).get_run(killed.info.run_id)  # the same run, not a new one
    assert run.info.status == "FINISHED" and len(runs(tmp_path)) == 2
    for key in ("loss", "val_loss", "accuracy"):
        steps = [m.step for m in client(tmp_path).get_metric_history(run.info.run_id, key)]
        assert sorted(steps) == [1, 2, 3, 4, 5], (key, steps)  # none missing, none duplicated
    assert run.data.params["train.epochs"] == "5"  # the saved config, not the CLI's smoke default
    assert run.data.metrics["test_accuracy"] > 0.6  # 3 classes: the resumed model learned
    assert "export" in {a.path for a in client(tmp_path).list_artifacts(run.info.run_id)}
    assert [o.model_id for o in run.outputs.model_outputs]  # the MLflow model, a LoggedModel of the run


class DivergingPipeline(Pipeline):
    """A one-layer regression whose inputs hold an inf: the loss is NaN from the first batch on."""

    name = "diverging"
    description = "test pipeline"
    config_cls = RunConfig
    presets = {"default": {"train": {"epochs": 3, "verbose": 0}}}
    default_dataset = "synthetic"

    def load_data(self, config):
        x = np.ones((64, 4), "float32")
        x[5, 2] = np.inf
        split = Split(x, np.ones((64, 1), "float32"))
        return Splits(split, split, split, DatasetInfo("synthetic", "test", "0"))

    def build_model(self, config, splits):
        import keras

        inputs = keras.Input((4,))
        model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
        model.compile("sgd", "mse")
        return model


def test_nan_loss_marks_run_failed_without_model(tmp_path):
    pipeline = DivergingPipeline()
    config = resolve(RunConfig, pipeline.presets, None, None, [])
    with pytest.raises(TrainingDiverged, match="training loss became (nan|inf) at epoch 1"):
        runner.run(pipeline, config, store_dir=tmp_path / "mlruns", echo=lambda line: None)
    experiment = client(tmp_path).get_experiment_by_name("diverging")
    (run,) = client(tmp_path).search_runs([experiment.experiment_id])
    assert run.info.status == "FAILED" and "TrainingDiverged" in run.data.tags["deepsuite.status_reason"]
    assert "export" not in {a.path for a in client(tmp_path).list_artifacts(run.info.run_id)}
    assert not run.outputs.model_outputs  # and no MLflow model



def test_a_live_run_is_never_resumed_and_a_resume_without_its_backup_or_data_is_refused(tmp_path):
    proc = start_cli([*SMOKE, *LONGER, "--set", "train.epochs=60"], tmp_path)  # still training for the checks
    wait_while_running(lambda: logged_epochs(tmp_path) >= 1, proc, 300, "a logged epoch",
                       lambda: proc.communicate()[1][-2000:])
    (live,) = runs(tmp_path)
    run_id = live.info.run_id
    busy = synthetic_cli([*SMOKE, "--resume", run_id], cwd=tmp_path)
    assert busy.returncode == 2 and f"run {run_id} is being trained right now by another process" in busy.stderr
    last = synthetic_cli([*SMOKE, "--resume", "last"], cwd=tmp_path)  # a live run is not an interrupted one
    assert last.returncode == 2 and "no interrupted synthetic run" in last.stderr
    assert proc.poll() is None, "the checks must run while the first process still trains"
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    work = tmp_path / "mlruns" / "work" / run_id
    saved = (work / "config.yaml").read_text(encoding="utf-8")
    assert "train_samples: 40000" in saved
    (work / "config.yaml").write_text(saved.replace("train_samples: 40000", "train_samples: 30000"), encoding="utf-8")
    changed = synthetic_cli([*SMOKE, "--resume", run_id], cwd=tmp_path)  # other data than the run started with
    assert changed.returncode == 2 and f"the data changed since run {run_id} started" in changed.stderr
    (work / "config.yaml").write_text(saved, encoding="utf-8")
    shutil.rmtree(work / "backup")
    gone = synthetic_cli([*SMOKE, "--resume", run_id], cwd=tmp_path)  # would restart at epoch 0 and merge curves
    assert gone.returncode == 2 and "its training backup" in gone.stderr and "is gone" in gone.stderr
    steps = [m.step for m in client(tmp_path).get_metric_history(run_id, "val_loss")]
    assert steps == sorted(set(steps)) and steps[0] == 1  # nothing logged twice by the refused attempts

def test_ctrl_c_marks_run_killed(tmp_path):
    proc = start_cli([*SMOKE, *LONGER], tmp_path)
    wait_while_running(lambda: logged_epochs(tmp_path) >= 1, proc, 300, "a logged epoch",
                       lambda: proc.communicate()[1][-2000:])
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in err
    (run,) = runs(tmp_path)
    assert run.info.status == "KILLED" and "Ctrl-C" in run.data.tags["deepsuite.status_reason"]
    assert "export" not in {a.path for a in client(tmp_path).list_artifacts(run.info.run_id)}
    assert not run.outputs.model_outputs  # and no MLflow model


def test_three_concurrent_runs_share_one_store(tmp_path):
    procs = [start_cli([*SMOKE, "--set", f"seed={seed}"], tmp_path) for seed in (1, 2, 3)]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [o[1][-1500:] for o in outputs]
    finished = runs(tmp_path)
    assert len(finished) == 3 and all(r.info.status == "FINISHED" for r in finished)
    assert sorted(r.data.tags["seed"] for r in finished) == ["1", "2", "3"]
    for run in finished:
        steps = [m.step for m in client(tmp_path).get_metric_history(run.info.run_id, "val_loss")]
        assert steps == [1, 2] and "test_accuracy" in run.data.metrics


def test_same_seed_same_metrics(tmp_path):
    first = synthetic_cli([*SMOKE, "--set", "seed=7"], cwd=tmp_path)
    second = synthetic_cli([*SMOKE, "--set", "seed=7"], cwd=tmp_path)
    assert first.returncode == 0 and second.returncode == 0, (first.stderr[-2000:], second.stderr[-2000:])
    a, b = runs(tmp_path)
    assert a.data.tags["determinism"] == "tf.enable_op_determinism"
    for key in ("test_accuracy", "test_log_loss", "loss", "val_loss"):
        assert a.data.metrics[key] == b.data.metrics[key], key
    other = synthetic_cli([*SMOKE, "--set", "seed=8"], cwd=tmp_path)
    assert other.returncode == 0
    c = next(r for r in runs(tmp_path) if r.data.tags["seed"] == "8")
    assert c.data.metrics["test_log_loss"] != a.data.metrics["test_log_loss"]  # the seed matters


@pytest.mark.parametrize("which", ["store", "cache"])
def test_unwritable_directory_fails_before_training(tmp_path, which, monkeypatch, capsys):
    from deepsuite.app import registry

    monkeypatch.setitem(registry._extra, SYNTHETIC, "tests.support.synthetic:SyntheticPipeline")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    args = [*SMOKE, "--store", str(blocker / "mlruns")] if which == "store" else \
        [*SMOKE, "--set", f"data.cache_dir={blocker / 'cache'}"]
    result = run_in_process(args, tmp_path, monkeypatch, capsys)
    assert result.code == 2 and "Traceback" not in result.err
    assert "not writable" in result.err or "cannot be created" in result.err
    # nothing started: no run opened, no data loaded, nothing trained
    assert "MLflow run" not in result.out and "data: " not in result.out and "done:" not in result.out
    assert blocker.read_text() == "not a folder"  # the blocking file is left as it was
    if which == "store":  # no store could exist under the file: nothing may have been written anywhere else
        assert sorted(path.name for path in tmp_path.iterdir()) == ["a-file"]
    else:                 # the store was writable: no run was opened in it
        assert not runs(tmp_path)
