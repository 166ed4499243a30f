"""Keras callbacks the runner adds to every fit(): an exact, kill-safe training backup and what it carries.

A run killed at any epoch and resumed must end where the uninterrupted run would have: the same
per-epoch metrics, the same stopping epoch, the same test metrics (on CPU). Keras's BackupAndRestore keeps
the weights and the optimizer (its slots, step count and EMA, all in the .weights.h5), but not the random
state of dropout and augmentation layers, not the early-stopping counters and best weights, and not the
data order; and it writes in place, so a kill mid-write leaves a backup that cannot be read.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Protocol

import keras
import numpy as np

WEIGHTS_FILE = "latest.weights.h5"        # weights and optimizer state (Keras writes both)
RANDOM_FILE = "random_state.npz"          # the model's seed-generator states (dropout, augmentation)
METADATA_FILE = "training_metadata.json"  # epochs done, whether training stopped, per-epoch logs, parts' state


class BackupPart(Protocol):
    """A callback whose state the backup carries: JSON-able values plus named arrays."""

    backup_name: str

    def backup_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]: ...

    def restore_state(self, values: dict[str, Any], arrays: dict[str, np.ndarray]) -> None: ...


class ExactBackup(keras.callbacks.Callback):
    """Saves every piece of training state after each epoch; restores it when fit() starts again.

    Each backup is written to `next/`, fsync'ed, then swapped in by renames, so `current/` (or, mid-swap,
    `old/`) is always a complete backup. Put it after the callbacks whose state it carries (`parts`), so
    it saves what they decided at the end of the epoch. `history` holds every epoch's logs, including
    those of the process that was killed, so the caller's curves are whole.
    """

    def __init__(self, backup_dir: str | Path, parts: tuple[BackupPart, ...] = ()):
        super().__init__()
        self.root = Path(backup_dir)
        self._current, self._next, self._old = self.root / "current", self.root / "next", self.root / "old"
        self.parts = parts
        self.history: dict[str, list[float]] = {}
        self.resumed_epoch = 0

    # -- restore -------------------------------------------------------------------------------------
    def on_train_begin(self, logs=None):
        self.history = {}
        if not self._current.exists() and self._old.exists():
            self._old.rename(self._current)  # killed between the two renames of a swap
        if not (self._current / METADATA_FILE).exists():
            return
        metadata = json.loads((self._current / METADATA_FILE).read_text(encoding="utf-8"))
        model = self.model
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)  # its slots must exist before they are loaded
        model.load_weights(str(self._current / WEIGHTS_FILE))
        with np.load(self._current / RANDOM_FILE) as saved:
            _assign_random_state(model, [saved[f"s{i}"] for i in range(len(saved.files))])
        with np.load(self._current / "parts.npz") as saved:
            arrays = {name: saved[name] for name in saved.files}
        for part in self.parts:
            prefix = part.backup_name + "/"
            part.restore_state(metadata["parts"].get(part.backup_name, {}),
                               {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)})
        self.history = {k: list(v) for k, v in metadata["history"].items()}
        self.resumed_epoch = int(metadata["epoch"])
        # Keras's own BackupAndRestore resumes through this attribute; a run that had already stopped
        # early runs no further epoch (fit goes straight to on_train_end, which restores the best weights).
        model._initial_epoch = self.params["epochs"] if metadata.get("stopped") else self.resumed_epoch

    # -- save ----------------------------------------------------------------------------------------
    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        self._save(epoch + 1)

    def on_train_end(self, logs=None):
        shutil.rmtree(self.root, ignore_errors=True)  # training is over: nothing left to resume

    def _save(self, epochs_done: int) -> None:
        shutil.rmtree(self._next, ignore_errors=True)
        self._next.mkdir(parents=True)
        self.model.save_weights(str(self._next / WEIGHTS_FILE), overwrite=True)
        np.savez(self._next / RANDOM_FILE, **{f"s{i}": s for i, s in enumerate(_random_state(self.model))})
        values, arrays = {}, {}
        for part in self.parts:
            part_values, part_arrays = part.backup_state()
            values[part.backup_name] = part_values
            arrays |= {f"{part.backup_name}/{k}": v for k, v in part_arrays.items()}
        np.savez(self._next / "parts.npz", **arrays)
        metadata = {"epoch": epochs_done, "stopped": bool(self.model.stop_training), "history": self.history,
                    "parts": values}
        (self._next / METADATA_FILE).write_text(json.dumps(metadata), encoding="utf-8")
        for path in self._next.iterdir():
            _fsync(path)
        _fsync(self._next)
        shutil.rmtree(self._old, ignore_errors=True)
        if self._current.exists():
            self._current.rename(self._old)
        self._next.rename(self._current)
        _fsync(self.root)
        shutil.rmtree(self._old, ignore_errors=True)


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping whose patience counter, best value and best weights survive a resume (ExactBackup)."""

    backup_name = "early_stopping"

    def backup_state(self):
        values = {"wait": self.wait, "stopped_epoch": self.stopped_epoch, "best_epoch": self.best_epoch,
                  "best": None if self.best is None else float(self.best)}
        arrays = {f"w{i}": w for i, w in enumerate(self.best_weights or [])}
        return values, arrays

    def restore_state(self, values, arrays):
        if not values:
            return
        self.wait, self.stopped_epoch = int(values["wait"]), int(values["stopped_epoch"])
        self.best_epoch, self.best = int(values["best_epoch"]), values["best"]
        self.best_weights = [arrays[f"w{i}"] for i in range(len(arrays))] or None


class EpochFeed(keras.callbacks.Callback):
    """Tells an epoch-seeded dataset (common.batches: EpochSeeded, or the tf.data form) which epoch is starting.

    Keras numbers epochs from the resumed one, so a resumed run draws the same batches as an
    uninterrupted one would have.
    """

    def __init__(self, dataset):
        super().__init__()
        self.dataset = dataset

    def on_epoch_begin(self, epoch, logs=None):
        self.dataset.set_epoch(epoch)


def _random_variables(model) -> list:
    """The model's random-generator states (dropout, augmentation): its variables that are not weights."""
    weights = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def _random_state(model) -> list[np.ndarray]:
    return [np.asarray(keras.ops.convert_to_numpy(v)) for v in _random_variables(model)]


def _assign_random_state(model, states: list[np.ndarray]) -> None:
    variables = _random_variables(model)
    if len(variables) != len(states):
        raise ValueError(f"the backup holds {len(states)} random-generator states but the model has "
                         f"{len(variables)}; it was saved from a different model")
    for variable, state in zip(variables, states):
        variable.assign(state)


def _fsync(path: Path) -> None:
    """Flush a file (or a folder's entries) to disk, so a power cut cannot leave a renamed, empty file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
