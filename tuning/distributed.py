"""Keras Tuner's own chief/worker protocol, set up from `--distributed chief|worker`.

Keras Tuner reads three environment variables when a tuner is created: KERASTUNER_TUNER_ID ("chief"
for the process that owns the oracle, a unique id per worker), KERASTUNER_ORACLE_IP and
KERASTUNER_ORACLE_PORT. The chief serves the oracle over gRPC and runs no trials; each worker asks it
for trials, fits them and reports back. Workers share the MLflow tracking store with the chief (a
tracking server, or the same sqlite file on one machine) and, for Hyperband's warm starts and for
restoring the best model without retraining, the store folder.

gRPC comes with TensorFlow (grpcio + protobuf). Without it a one-process search works and
`--distributed` stops with a message saying what to install.

Keras Tuner's gRPC service has no authentication: anyone who reaches the port can take trials, report
made-up results or stop the search. With DEEPSUITE_TUNE_TOKEN set (the same value on the chief and
every worker), the chief refuses any call without "authorization: Bearer <token>", and workers send it.
The chief binds 127.0.0.1 unless --host says otherwise; the token is for when it must not.
"""
from __future__ import annotations

import hmac
import os
import socket
import time
from typing import Callable

from deepsuite.common.errors import ConfigError, DeepsuiteError

ENV_KEYS = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")
TOKEN_ENV = "DEEPSUITE_TUNE_TOKEN"  # when set: the chief asks every call for it, workers send it
AUTH_KEY = "authorization"


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


def token() -> str | None:
    return os.environ.get(TOKEN_ENV) or None


def guard_chief(secret: str | None) -> None:
    """Make this process's chief serve the oracle through `serve_oracle` (with the token check when set).

    Keras Tuner starts its gRPC server inside `tuner.search()` with no way to pass an interceptor, so its
    `start_server` is replaced by ours: the same servicer and the same wait for the workers to finish.
    """
    from keras_tuner.src.distribute import oracle_chief

    oracle_chief.start_server = lambda oracle: serve_oracle(oracle, secret)


def serve_oracle(oracle, secret: str | None) -> None:
    """Keras Tuner's oracle service on KERASTUNER_ORACLE_IP:PORT, until the search stops and workers leave."""
    from concurrent import futures

    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute.oracle_chief import OracleServicer, exit_chief

    from deepsuite.tuning.grpc_token import RequireToken

    interceptors = [RequireToken(secret, TOKEN_ENV)] if secret else []
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1), interceptors=interceptors)
    servicer = OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    server.add_insecure_port(f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}")
    server.start()
    try:
        while not servicer.stop_triggered:
            time.sleep(1)
        while not exit_chief(oracle):  # trials still running on workers
            time.sleep(2)
    finally:
        server.stop(grace=5)


def authenticate_worker(tuner, host: str, port: int, secret: str | None) -> None:
    """Send the token with every call this worker's tuner makes to the chief (no-op without one)."""
    if not secret:
        return
    import grpc
    from keras_tuner.src import protos

    from deepsuite.tuning.grpc_token import SendToken

    channel = grpc.intercept_channel(grpc.insecure_channel(f"{host}:{port}"), SendToken(secret))
    tuner.oracle.stub = protos.get_service_grpc().OracleStub(channel)


def refused(exc: BaseException) -> bool:
    """True for the chief's answer to a call without the right token."""
    import grpc

    return isinstance(exc, grpc.RpcError) and exc.code() == grpc.StatusCode.UNAUTHENTICATED
