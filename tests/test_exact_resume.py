"""A run killed mid-training and resumed ends exactly where the uninterrupted run ends (issue 23, point 8).

Real image-classification smoke runs (Fashion-MNIST subset, its augmentation, dropout, early stopping and
cosine schedule), on CPU, through the real CLI: one uninterrupted; one SIGKILLed once its backup holds 3
epochs, then resumed with `--resume RUN_ID`. Every per-epoch metric, the stopping epoch and every test
metric must be equal, not merely close: the backup carries the optimizer, the schedule step, the
early-stopping counters and best weights, the dropout/augmentation random state and the data order.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.support.cli import REPO, like_a_terminal, run_cli, wait_while_running
from tests.support.data import needs_fashion_mnist
from tests.support.store import only_run

pytestmark = needs_fashion_mnist
# 30 epochs with patience 3: early stopping ends the run well before 30, a few epochs after the kill
RUN = ["run", "image-classification", "--preset", "smoke", "--set", "train.epochs=30",
       "--set", "train.early_stopping_patience=3", "--set", "model.dropout=0.3", "--set", "seed=5"]


def backup_epochs(folder: Path) -> int:
    """Epochs the training backup holds (0 before the first one is written)."""
    for metadata in (folder / "mlruns" / "work").glob("*/backup/current/training_metadata.json"):
        try:
            return json.loads(metadata.read_text(encoding="utf-8"))["epoch"]
        except (OSError, ValueError, KeyError):
            return 0  # caught between the write and the rename: not yet
    return 0


def curves(folder: Path) -> tuple[dict[str, list[tuple[int, float]]], dict[str, float], str]:
    client, run = only_run(folder, "image-classification")
    per_epoch = {key: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
                 for key in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")}
    tests = {k: v for k, v in run.data.metrics.items() if k.startswith("test_")}
    return per_epoch, tests, run.info.status


def test_killed_and_resumed_run_equals_the_uninterrupted_run(tmp_path):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    whole.mkdir(), broken.mkdir()
    reference = run_cli(RUN, cwd=whole)
    assert reference.code == 0, reference.err[-3000:]
    expected, expected_tests, _ = curves(whole)
    epochs = len(expected["val_loss"])
    assert 5 <= epochs < 30, f"early stopping should end the run a few epochs after the kill, not at {epochs}"

    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "deepsuite.app.cli", *RUN], cwd=broken, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=like_a_terminal)
    wait_while_running(lambda: backup_epochs(broken) >= 3, proc, 300, "a backup of 3 epochs",
                       lambda: proc.communicate()[1][-2000:])
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    killed_after = backup_epochs(broken)
    assert 3 <= killed_after < epochs, killed_after
    _, run = only_run(broken, "image-classification")
    assert run.info.status == "RUNNING"

    resumed = run_cli(["run", "image-classification", "--resume", run.info.run_id], cwd=broken)
    assert resumed.code == 0, resumed.err[-3000:]
    got, got_tests, status = curves(broken)
    assert status == "FINISHED"
    assert len(got["val_loss"]) == epochs, f"stopped after {len(got['val_loss'])} epochs, not {epochs}"
    for key in expected:
        assert got[key] == expected[key], (key, killed_after, got[key], expected[key])
    assert got_tests == expected_tests


def test_shuffled_arrays_are_a_permutation_per_epoch_drawn_from_seed_and_epoch_only():
    import numpy as np

    from deepsuite.common.batches import ShuffledArrays

    x = {"user": np.arange(10), "item": np.arange(10) * 2}
    feed = ShuffledArrays(x, np.arange(10) * 3, batch_size=4, seed=1)
    assert len(feed) == 3

    def epoch(e):
        feed.set_epoch(e)
        batches = [feed[i] for i in range(len(feed))]
        assert [len(b[1]) for b in batches] == [4, 4, 2]  # the last batch partial, as fit() makes it
        users = np.concatenate([b[0]["user"] for b in batches])
        assert (np.concatenate([b[0]["item"] for b in batches]) == users * 2).all()  # rows stay together
        assert (np.concatenate([b[1] for b in batches]) == users * 3).all()
        return users

    first, second = epoch(0), epoch(1)
    assert sorted(first) == list(range(10)) and sorted(second) == list(range(10))  # each sample once an epoch
    assert (first != second).any()
    again = ShuffledArrays(x, np.arange(10) * 3, batch_size=4, seed=1)  # a new process, resumed at epoch 1
    again.set_epoch(1)
    assert (np.concatenate([again[i][0]["user"] for i in range(3)]) == second).all()


def test_the_tensorflow_form_reshuffles_by_seed_and_epoch_and_keeps_rows_together():
    import numpy as np

    from deepsuite.common.tf_batches import TensorFlowShuffledArrays

    x = {"user": np.arange(10), "text": np.array([f"t{i}" for i in range(10)], dtype=object)}
    feed = TensorFlowShuffledArrays(x, np.arange(10) * 3, batch_size=4, seed=1)

    def epoch(e):
        feed.set_epoch(e)
        batches = list(feed.dataset.as_numpy_iterator())
        assert [len(b[1]) for b in batches] == [4, 4, 2]
        users = np.concatenate([b[0]["user"] for b in batches])
        texts = np.concatenate([b[0]["text"] for b in batches])
        assert [t.decode() for t in texts] == [f"t{u}" for u in users]  # strings gathered with their rows
        assert (np.concatenate([b[1] for b in batches]) == users * 3).all()
        return users

    first, second = epoch(0), epoch(1)
    assert sorted(first) == list(range(10)) and sorted(second) == list(range(10)) and (first != second).any()
    assert (epoch(0) == first).all()  # from (seed, epoch) only
    assert feed.dataset.cardinality().numpy() == 3  # Keras knows the epoch's length
