"""Run `deepsuite` as a real subprocess, the way a user does, in an isolated store and cache."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None, backend: str = "tensorflow",
            hide_tensorflow: bool = False, timeout: float = 900) -> Result:
    full_env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3",
                "PYTHONPATH": str(REPO), **(env or {})}
    module = "tests.support.without_tensorflow" if hide_tensorflow else "common.cli"
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)
    return Result(proc.returncode, proc.stdout, proc.stderr)
