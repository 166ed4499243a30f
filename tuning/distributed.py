"""Keras Tuner's own chief/worker protocol, set up from `--distributed chief|worker`.

Keras Tuner reads three environment variables when a tuner is created: KERASTUNER_TUNER_ID ("chief"
for the process that owns the oracle, a unique id per worker), KERASTUNER_ORACLE_IP and
KERASTUNER_ORACLE_PORT. The chief serves the oracle over gRPC and runs no trials; each worker asks it
for trials, fits them and reports back. Workers share the MLflow tracking store with the chief (a
tracking server, or the same sqlite file on one machine) and, for Hyperband's warm starts and for
restoring the best model without retraining, the store folder.

gRPC comes with TensorFlow (grpcio + protobuf). Without it a one-process search works and
`--distributed` stops with a message saying what to install.
"""
from __future__ import annotations

import os
import socket
import time
from typing import Callable

from deepsuite.common.errors import ConfigError, DeepsuiteError

ENV_KEYS = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")


def require_grpc() -> None:
    try:
        import grpc  # noqa: F401
        from keras_tuner.src import protos

        protos.get_service_grpc()
    except ImportError as exc:
        raise DeepsuiteError(f"distributed search needs grpcio and protobuf ({exc}); they come with TensorFlow, "
                             "else `pip install grpcio protobuf`. A one-process search works without them") from None


def parse_address(text: str | None) -> tuple[str, int]:
    host, sep, port = (text or "").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--chief {text!r}: expected HOST:PORT of the chief, e.g. --chief 10.0.0.5:8000")
    return host.strip("[]"), int(port)


def default_worker_id() -> str:
    """Unique per process; pass --worker-id to keep it across restarts (the chief then resumes its trial)."""
    return f"worker-{socket.gethostname()}-{os.getpid()}"


def set_role(role: str | None, host: str = "", port: int = 0, tuner_id: str = "") -> None:
    """Set (or, for a one-process search, clear) the variables Keras Tuner reads at tuner creation."""
    for key in ENV_KEYS:
        os.environ.pop(key, None)
    if role is None:
        return
    if role == "worker" and "chief" in tuner_id:
        raise ConfigError(f"--worker-id {tuner_id!r}: a worker id must not contain 'chief' (Keras Tuner's chief marker)")
    os.environ.update({"KERASTUNER_TUNER_ID": "chief" if role == "chief" else tuner_id,
                       "KERASTUNER_ORACLE_IP": host, "KERASTUNER_ORACLE_PORT": str(port)})


def wait_for_chief(host: str, port: int, timeout: float, echo: Callable[[str], None] = print) -> None:
    """Connect to the chief's gRPC server, retrying with exponential backoff until `timeout` seconds."""
    import grpc

    started, delay, attempts = time.time(), 0.5, 0
    while True:
        attempts += 1
        channel = grpc.insecure_channel(f"{host}:{port}")
        try:
            grpc.channel_ready_future(channel).result(timeout=max(0.2, min(delay, timeout)))
            return
        except grpc.FutureTimeoutError:
            pass
        finally:
            channel.close()
        remaining = timeout - (time.time() - started)
        if remaining <= 0:
            raise DeepsuiteError(
                f"cannot reach the tuning chief at {host}:{port} after {attempts} attempts over "
                f"{time.time() - started:.0f}s; start `deepsuite tune ... --distributed chief --port {port}` "
                "first, check the address and firewall, or raise --connect-timeout")
        echo(f"chief {host}:{port} not reachable yet (attempt {attempts}); retrying in {min(delay, remaining):.1f}s")
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 10.0)
