"""Shared by the UI, compare and serve tests: two finished smoke runs, long-running CLI processes.

The two runs are trained once per pytest session (a module-level cache, since fixtures in different
test files are separate fixtures) and differ in one param, so `compare` has something to show.
"""
from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.cli import REPO, like_a_terminal

ARTIFACTS = Path(os.environ.get("DEEPSUITE_TEST_ARTIFACTS", REPO / "test-artifacts"))
QUIET_SERVER_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
DROPOUTS = ("0.2", "0.4")
RUN_NAMES = ("cnn-smoke-dropout-0.2", "cnn-smoke-dropout-0.4")
# MLflow samples system metrics every 10 s by default; a 1-epoch smoke run may end before the first sample
SAMPLE_EVERY_SECOND = {"MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "1"}
_two_runs: Path | None = None


def two_finished_runs(tmp_path_factory) -> Path:
    """A folder whose mlruns/ holds two FINISHED image-classification smoke runs (1 epoch each).

    Trained at the same time (two cores, and it exercises concurrent writers on the sqlite store);
    named explicitly, since default names only differ by the second they started in; system metrics are
    sampled every second, so the run's System metrics tab has points to draw.
    """
    global _two_runs
    if _two_runs is None:
        folder = tmp_path_factory.mktemp("two-runs")
        runs = [start_cli(["run", "image-classification", "--preset", "smoke", "--set", "train.epochs=1",
                           "--set", f"model.dropout={dropout}", "--set", f"tracking.run_name={name}"], cwd=folder,
                          env=SAMPLE_EVERY_SECOND)
                for dropout, name in zip(DROPOUTS, RUN_NAMES)]
        for run in runs:
            assert run.process.wait(900) == 0, run.output[-3000:]
        _two_runs = folder
    return _two_runs


@dataclass
class CliProcess:
    """A `deepsuite` command running in the background, its output collected line by line."""

    process: subprocess.Popen
    lines: list[str] = field(default_factory=list)
    _queue: queue.Queue = field(default_factory=queue.Queue)

    def wait_for(self, text: str, timeout: float) -> str:
        """Block until a line containing `text` is printed; fail with the output if it exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.5)
            except queue.Empty:
                if self.process.poll() is not None and self._queue.empty():
                    break
                continue
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r} after {timeout:.0f} s (exit code {self.process.poll()}):\n"
                             + "".join(self.lines)[-4000:])

    def interrupt(self, timeout: float = 60) -> int:
        """Ctrl-C, as a terminal sends it; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)

    @property
    def output(self) -> str:
        return "".join(self.lines)


def start_cli(args: list[str], cwd: Path, backend: str = "tensorflow", hide_tensorflow: bool = False,
              env: dict[str, str] | None = None) -> CliProcess:
    full_env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO),
                "PYTHONUNBUFFERED": "1", **QUIET_SERVER_ENV}
    full_env.pop("MLFLOW_TRACKING_URI", None)  # only the test's own `env` may name a store
    full_env.update(env or {})
    module = "tests.support.without_tensorflow" if hide_tensorflow else "deepsuite.app.cli"
    process = subprocess.Popen([sys.executable, "-m", module, *args], cwd=cwd, env=full_env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=like_a_terminal)
    running = CliProcess(process)

    def pump() -> None:
        for line in process.stdout:
            running.lines.append(line)
            running._queue.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return running
