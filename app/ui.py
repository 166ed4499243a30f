"""`deepsuite ui`: MLflow's own UI/server on the suite's store, started and stopped cleanly.

The suite keeps runs in `<store>/mlflow.db` (sqlite) with artifacts under `<store>/artifacts`, so the
UI is simply `mlflow server` pointed at those two places. We launch the `mlflow` CLI as a child
process (this module never imports mlflow) in its own process group: Ctrl-C reaches only us, and we
stop the whole group (uvicorn and its workers) so nothing is left holding the port.
`deepsuite server` (app/team_server.py) reuses `run_mlflow_server` with a database backend. The port probe
is app/ports.py, shared with `deepsuite serve` and a tuning chief.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Sequence

from deepsuite.common.errors import DeepsuiteError
from deepsuite.common.redaction import redact
from deepsuite.app.ports import LOOPBACK, ensure_port_free, exposure_warning
from deepsuite.app.ports import free_port, port_is_free  # noqa: F401 - kept importable here: the tests pick ports with them

READY_TIMEOUT_S = 180.0
# MLflow 3's server starts a job runner with seven huey consumers for GenAI jobs (scorers, prompt
# optimisation); the suite trains models and never queues one, so the UI starts without them.
NO_GENAI_JOBS = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
ML_VIEW = "workflowType=machine_learning"  # MLflow 3.17's UI: model-training view, not GenAI  # first start on a database runs MLflow's schema migrations


# -- addresses ------------------------------------------------------------------------------------

def url_for(host: str, port: int) -> str:
    shown = LOOPBACK if host in ("0.0.0.0", "") else ("localhost" if host == "::" else host)
    return f"http://{f'[{shown}]' if ':' in shown else shown}:{port}"


# -- the local store ------------------------------------------------------------------------------

def local_store(store: Path, echo: Callable[[str], None] = print) -> tuple[str, Path]:
    """(backend store URI, artifacts folder) of a suite store folder, creating an empty one if needed."""
    store = Path(store).expanduser()
    if store.exists() and not store.is_dir():
        raise DeepsuiteError(f"--store {store} is a file; give the folder that holds mlflow.db "
                             "(`deepsuite run` creates ./mlruns)")
    if not (store / "mlflow.db").exists():
        try:
            (store / "artifacts").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DeepsuiteError(f"--store {store}: cannot create the store folder ({exc.strerror})") from None
        echo(f"note: {store} had no runs yet; created an empty store there. "
             f"Runs appear after `deepsuite run <pipeline> --store {store}`.")
    if not os.access(store, os.W_OK):
        raise DeepsuiteError(f"--store {store} is not writable (the UI keeps its sqlite database there)")
    store = store.resolve()
    (store / "artifacts").mkdir(exist_ok=True)
    return f"sqlite:///{store}/mlflow.db?timeout=60", store / "artifacts"


def _artifacts_beside(uri: str, store: Path) -> Path:
    """The suite keeps artifacts in <store>/artifacts beside <store>/mlflow.db: for a sqlite URI, that folder."""
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///").split("?")[0]).expanduser().resolve().parent / "artifacts"
    return Path(store).expanduser().resolve() / "artifacts"


def ui_command(artifacts: str, host: str, port: int, workers: int = 1) -> list[str]:
    """The `mlflow server` command line for the suite's UI (quiet uvicorn: warnings only); the store URI
    travels in the environment (MLFLOW_BACKEND_STORE_URI), never on a command line `ps` shows."""
    return [*mlflow_cli(), "server",
            "--artifacts-destination", artifacts, "--host", host, "--port", str(port),
            "--workers", str(workers), "--uvicorn-opts", "--log-level warning"]


def mlflow_cli() -> list[str]:
    """The `mlflow` CLI of the interpreter running the suite (not whatever is first on PATH)."""
    return [sys.executable, "-m", "mlflow"]


# -- running it -----------------------------------------------------------------------------------

def wait_until_ready(url: str, process: subprocess.Popen, timeout: float = READY_TIMEOUT_S) -> None:
    """Poll MLflow's /health until it answers; a child that exits first is reported, not waited on."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DeepsuiteError(f"the MLflow server exited with code {process.returncode} before it was "
                                 "ready (its messages are above)")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.5)
    raise DeepsuiteError(f"the MLflow server did not answer at {url}/health within {timeout:.0f} s")


def stop(process: subprocess.Popen, grace_s: float = 15.0) -> int:
    """SIGTERM the child's whole process group, then SIGKILL what is left after `grace_s`."""
    if process.poll() is None:
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait()
    _signal_group(process, signal.SIGKILL)  # stray workers of an exited parent
    return process.returncode


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run_mlflow_server(command: Sequence[str], url: str, banner: Callable[[str], str],
                      echo: Callable[[str], None] = print, env: dict[str, str] | None = None,
                      ready_timeout: float = READY_TIMEOUT_S) -> int:
    """Start `command`, print `banner(url)` once it answers, wait; Ctrl-C or SIGTERM stop it cleanly."""
    child_env = {**os.environ, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", **(env or {})}
    child_env.pop("MLFLOW_TRACKING_URI", None)  # the server is the store; a client URI would confuse it
    process = subprocess.Popen(list(command), env=child_env, start_new_session=True)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    try:
        wait_until_ready(url, process, ready_timeout)
        echo(banner(url))
        sys.stdout.flush()
        code = process.wait()
        raise DeepsuiteError(f"the MLflow server stopped by itself (exit code {code})")
    except KeyboardInterrupt:
        stop(process)
        echo("stopped the MLflow server")
        return 0
    finally:
        stop(process)
        signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def experiment_links(url: str) -> list[tuple[str, str]]:
    """(name, runs-table link) of each experiment with runs, asked from the running server's REST API.

    MLflow 3.17's UI opens experiments in its GenAI view unless "Model training" was picked at the top
    left (remembered per browser, not per experiment), so the links pick it: workflowType=machine_learning.
    """
    request = urllib.request.Request(f"{url}/ajax-api/2.0/mlflow/experiments/search", method="POST",
                                     data=b'{"max_results": 50}', headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            experiments = json.loads(response.read()).get("experiments", [])
    except (urllib.error.URLError, OSError, ValueError):
        return []
    return [(e["name"], f"{url}/#/experiments/{e['experiment_id']}/runs?{ML_VIEW}")
            for e in experiments if e["name"] != "Default"]


def start_ui(store: Path | None, host: str = LOOPBACK, port: int = 5000, backend_store_uri: str | None = None,
             artifacts: str | None = None, workers: int = 1, echo: Callable[[str], None] = print) -> int:
    """`deepsuite ui`: the store's runs in MLflow's UI until Ctrl-C.

    The store comes from where `deepsuite run` takes it: --backend-store-uri/--tracking-uri or --store, else
    MLFLOW_TRACKING_URI, else ./mlruns; a user who set the variable for their runs sees those runs here.
    """
    if workers < 1:
        raise DeepsuiteError(f"--workers {workers}: need at least 1")
    if not backend_store_uri and store is None and os.environ.get("MLFLOW_TRACKING_URI"):
        backend_store_uri = os.environ["MLFLOW_TRACKING_URI"]
        echo(f"store from MLFLOW_TRACKING_URI: {redact(backend_store_uri)}")
    store = Path("mlruns") if store is None else store
    if backend_store_uri:
        if backend_store_uri.startswith(("http://", "https://")):
            raise DeepsuiteError(f"{redact(backend_store_uri)} is a tracking server, with its own UI: open it in a "
                                 "browser (deepsuite ui serves a database such as sqlite:///mlruns/mlflow.db)")
        artifacts_dir = Path(artifacts) if artifacts else _artifacts_beside(backend_store_uri, store)
    else:
        backend_store_uri, artifacts_dir = local_store(store, echo)
    ensure_port_free(host, port, "the UI")
    command = ui_command(artifacts or str(artifacts_dir), host, port, workers)
    where = redact(backend_store_uri.split("?")[0])

    def banner(url: str) -> str:
        lines = [f"MLflow UI for {where}", f"  open {url}  (press Ctrl-C to stop)"]
        links = experiment_links(url)
        lines += [f"  runs of {name}: {link}" for name, link in links]
        if links:
            lines.append('  tip: choose "Model training" at the top left once; the browser remembers it')
        warning = exposure_warning(host, "the UI", "can read and delete runs")
        if warning:
            lines.append(warning)
        return "\n".join(lines)

    quiet = {"MLFLOW_LOGGING_LEVEL": "WARNING", "PYTHONWARNINGS": "ignore", **NO_GENAI_JOBS,
             "MLFLOW_BACKEND_STORE_URI": backend_store_uri}
    return run_mlflow_server(command, url_for(host, port), banner, echo=echo, env=quiet)
