"""What a user sees of a run while and after it trains: a live bar within each epoch on a terminal, one
line per epoch in logs and CI, and MLflow's system metrics (CPU, memory) beside the run's own."""
from __future__ import annotations

import os
import pty
import subprocess
import sys

from tests.support.cli import REPO, run_cli
from tests.support.data import needs_fashion_mnist
from tests.support.store import only_run

pytestmark = needs_fashion_mnist
RUN = ["run", "image-classification", "--preset", "smoke", "--set", "train.epochs=2", "--set", "train.verbose=auto",
       "--set", "tracking.log_model=false"]


def run_on_a_terminal(args: list[str], cwd) -> str:
    """`deepsuite ARGS` with stdout on a pseudo-terminal, as when a user runs it in a shell."""
    leader, follower = pty.openpty()
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "deepsuite.app.cli", *args], cwd=cwd, env=env, stdout=follower,
                            stderr=subprocess.PIPE)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the process is gone
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert proc.wait(timeout=600) == 0, proc.stderr.read()[-3000:]
    return b"".join(chunks).decode("utf-8", "replace")


def test_a_terminal_gets_a_live_bar_a_log_one_line_per_epoch_and_the_run_system_metrics(tmp_path):
    (tmp_path / "tty").mkdir(), (tmp_path / "log").mkdir()
    terminal = run_on_a_terminal(RUN, tmp_path / "tty")
    assert "━" in terminal and "\r" in terminal  # Keras's bar, redrawn in place within the epoch
    assert terminal.count("Epoch 1/2") == 1 and "Epoch 2/2" in terminal

    logged = run_cli(RUN, cwd=tmp_path / "log",  # stdout is a pipe, as in CI or `> run.log`
                     env={"MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "1"})
    assert logged.code == 0, logged.err[-3000:]
    epoch_lines = [line for line in logged.out.splitlines() if "/step" in line and "loss" in line]
    assert len(epoch_lines) == 2, logged.out[-2000:]  # one line per epoch
    assert "━" not in logged.out and "\r" not in logged.out

    client, run = only_run(tmp_path / "log", "image-classification")
    for key in ("system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"):
        points = client.get_metric_history(run.info.run_id, key)
        assert points and all(p.value >= 0 for p in points), key  # sampled every second while it trained

    report = (client.download_artifacts(run.info.run_id, "report.html", str(tmp_path)))
    text = open(report, encoding="utf-8").read()
    assert "<h2>Run</h2>" in text and run.data.params["data.digest"] in text  # which data, exactly
    assert "2 of 2 epochs" in text and "cpu (tensorflow backend" in text and "CPU cores" in text
    assert "<h2>Resolved config</h2>" in text and "verbose: auto" in text
