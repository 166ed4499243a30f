"""Is a TCP port free to listen on: the one probe every server the suite starts asks before it starts.

`deepsuite ui`, `deepsuite server`, `deepsuite serve` and a tuning chief (`deepsuite tune --distributed
chief`) all refuse a port they could not listen on with one line naming the fix, instead of a traceback
from a child process or from gRPC once the search is under way.
"""
from __future__ import annotations

import errno
import socket

from deepsuite.common.errors import ConfigError

LOOPBACK = "127.0.0.1"


def _bind_error(host: str, port: int) -> OSError | None:
    """Why a server could not listen on host:port now, or None when it could."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        # as servers do: closed connections in TIME_WAIT do not block the port, a listener does
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc
    return None


def port_is_free(host: str, port: int) -> bool:
    return _bind_error(host, port) is None


def free_port(host: str = LOOPBACK, near: int | None = None) -> int:
    """A port that is free now: the first free one after `near`, else one the kernel picks."""
    if near:
        for candidate in range(near + 1, min(near + 50, 65535)):
            if port_is_free(host, candidate):
                return candidate
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def ensure_port_free(host: str, port: int, what: str = "the server") -> None:
    """Refuse a port `what` could not listen on (--port/--host), suggesting a free port when it is busy."""
    if not 0 < port < 65536:
        raise ConfigError(f"--port {port} is not a TCP port (1-65535)")
    try:
        socket.getaddrinfo(host, port)
    except socket.gaierror:
        raise ConfigError(f"--host {host!r} is not an address of this machine (try {LOOPBACK})") from None
    error = _bind_error(host, port)
    if error is None:
        return
    if error.errno == errno.EADDRINUSE:
        raise ConfigError(f"port {port} on {host} is already in use (another MLflow UI or server?); "
                          f"start {what} on a free port, e.g. --port {free_port(host, port)}")
    raise ConfigError(f"{what} cannot listen on {host}:{port} ({error.strerror}); pick another --port or --host")


def is_loopback(host: str) -> bool:
    """True when a server bound to `host` is reachable from this machine only."""
    return host in ("localhost", "::1", "[::1]") or host.startswith("127.")


def exposure_warning(host: str, what: str, consequence: str) -> str | None:
    """One warning line when `what` listens beyond this machine (anything but loopback), else None."""
    if is_loopback(host):
        return None
    return f"  warning: {what} listens on {host}: anyone who can reach this machine {consequence}"
