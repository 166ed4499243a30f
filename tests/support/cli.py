"""Run `deepsuite` as a real subprocess, the way a user does, in an isolated store and cache."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"


def like_a_terminal() -> None:
    """Popen `preexec_fn`: Ctrl-C handled as in a shell's foreground. A job started in the background (`cmd &`,
    as CI runners and nohup do) inherits SIGINT ignored, Python then installs no KeyboardInterrupt handler,
    and a SIGINT sent by a test would do nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_while_running(predicate, proc: subprocess.Popen, timeout: float, what: str, output=lambda: "") -> None:
    """Polls `predicate` every 0.1 s until it holds; fails at once, with `output()`, when `proc` exits first
    (a test that waits on a dead process learns nothing for its whole timeout), and after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"the process exited ({proc.returncode}) before {what}:\n{output()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {timeout:.0f} s:\n{output()}")
        time.sleep(0.1)


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None, backend: str = "tensorflow",
            hide_tensorflow: bool = False, timeout: float = 900) -> Result:
    full_env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3",
                "PYTHONPATH": str(REPO), **(env or {})}
    module = "tests.support.without_tensorflow" if hide_tensorflow else "deepsuite.app.cli"
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def run_in_process(args: list[str], cwd: Path, monkeypatch, capsys) -> Result:
    """`deepsuite ARGS` through `deepsuite.app.cli.main` in this process: the same parser, handlers and error
    lines as the subprocess, without a second interpreter start (for errors raised before any training).

    The process-wide state a command may set (the working folder, MLflow's tracking URI and its
    environment variable) is restored when the test ends; the native-log filter, which re-plumbs fd 2,
    is not installed here.
    """
    import mlflow.tracking._tracking_service.utils as tracking_utils

    from deepsuite.app import console
    from deepsuite.app.cli import main

    monkeypatch.setattr(console.filter_native_logs, "installed", True, raising=False)
    monkeypatch.setattr(tracking_utils, "_tracking_uri", tracking_utils._tracking_uri)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "unset")  # recorded, so the test's end restores it
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))  # main may set it
    capsys.readouterr()
    try:
        code = main(args)
    except SystemExit as exc:  # argparse's usage errors exit, as they do for the real command
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return Result(code, out, err)
