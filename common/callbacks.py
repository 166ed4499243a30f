"""Keras callbacks the runner adds to every fit()."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """BackupAndRestore whose backups survive a SIGKILL at any moment.

    Keras writes the weights and the epoch file in place, so a kill during the write leaves a corrupt
    HDF5 file and resuming fails. Here each backup is written to `next/`, then swapped in by renames;
    `current/` is always a complete weights + epoch pair (or, mid-swap, `old/` is).
    """

    def __init__(self, backup_dir: str | Path):
        super().__init__(str(backup_dir), delete_checkpoint=True)
        root = Path(backup_dir)
        self._current, self._next, self._old = root / "current", root / "next", root / "old"
        self._weights_path = str(self._current / "latest.weights.h5")
        self._training_metadata_path = str(self._current / "training_metadata.json")

    def on_train_begin(self, logs=None):
        if not self._current.exists() and self._old.exists():
            self._old.rename(self._current)  # killed between the two renames of a swap
        super().on_train_begin(logs)

    def _save_model(self):
        shutil.rmtree(self._next, ignore_errors=True)
        self._next.mkdir(parents=True)
        self.model.save_weights(str(self._next / "latest.weights.h5"), overwrite=True)
        metadata = {"epoch": self._current_epoch, "batch": self._last_batch_seen}
        (self._next / "training_metadata.json").write_text(json.dumps(metadata))
        shutil.rmtree(self._old, ignore_errors=True)
        if self._current.exists():
            self._current.rename(self._old)
        self._next.rename(self._current)
        shutil.rmtree(self._old, ignore_errors=True)
