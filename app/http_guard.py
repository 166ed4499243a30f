"""What one HTTP client may hold of the scoring server: connections, time, Host names, JSON nesting.

The server answers anyone who can reach it; these bounds keep a slow, hostile or confused client (or a
web page doing DNS rebinding) from tying it up, whatever the model behind it does.
"""
from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer
from typing import Any

from deepsuite.app.ports import is_loopback

MAX_JSON_DEPTH = 32            # image arrays nest 3-4 deep; a hostile body nests 100,000 deep
REQUEST_TIMEOUT_S = 30.0       # an idle or trickling client is dropped after this long without a byte
MAX_CONNECTIONS = 16           # requests handled at once; more wait for a free slot
LOCAL_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}


class BoundedHTTPServer(ThreadingHTTPServer):
    """A thread per request, at most `slots` at once: a flood of slow clients cannot exhaust the host."""

    daemon_threads = True

    def __init__(self, address, handler, slots: int = MAX_CONNECTIONS):
        super().__init__(address, handler)
        self.slots = threading.BoundedSemaphore(slots)

    def process_request(self, request, client_address):
        self.slots.acquire()
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


def allowed_hosts(host: str, extra: str | None) -> set[str] | None:
    """Host header names to accept (DNS rebinding from a browser); None accepts any.

    Bound to loopback: this machine's names. Bound elsewhere: the names given with --allowed-hosts, else
    any (the banner warns that the server is exposed)."""
    names = {name.strip().lower() for name in (extra or "").split(",") if name.strip()}
    if is_loopback(host):
        return names | LOCAL_NAMES | {host}
    return (names | {host}) if names else None


def host_name(header: str) -> str:
    """The name in a Host header: "example.com:5001" -> "example.com", "[::1]:5001" -> "[::1]"."""
    header = header.strip().lower()
    if header.startswith("["):
        return header.split("]", 1)[0] + "]"
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def json_depth(value: Any) -> int:
    """How deeply `value` nests lists and objects, counted without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest
