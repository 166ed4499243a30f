"""Keep the terminal readable: drop the C++ start-up chatter of TensorFlow/XLA from stderr.

TensorFlow 2.21 logs through absl before its log level applies, so TF_CPP_MIN_LOG_LEVEL does not stop
lines such as "I0000 00:00:... port.cc:153] oneDNN custom operations are on". Our own errors must be
one clear line, so the CLI routes the process's stderr (file descriptor 2, which native code writes to
directly) through a filter thread that forwards everything except those glog-formatted lines.
"""
from __future__ import annotations

import atexit
import os
import re
import sys
import threading

NATIVE_LOG = re.compile(rb"^([IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\]|WARNING: All log messages before absl"
                        rb"|To enable the following instructions: )")


def filter_native_logs() -> None:
    """Install the stderr filter once per process (no-op where fd 2 cannot be redirected)."""
    if getattr(filter_native_logs, "installed", False):
        return
    try:
        real = os.dup(2)
        read_end, write_end = os.pipe()
        sys.stderr.flush()
        os.dup2(write_end, 2)
        os.close(write_end)
    except OSError:
        return
    filter_native_logs.installed = True

    def pump() -> None:
        with os.fdopen(read_end, "rb", buffering=0) as source:
            pending = b""
            while chunk := source.read(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if not NATIVE_LOG.match(line):
                        os.write(real, line + b"\n")
            if pending and not NATIVE_LOG.match(pending):
                os.write(real, pending)

    thread = threading.Thread(target=pump, name="stderr-filter", daemon=True)
    thread.start()

    def drain() -> None:
        sys.stderr.flush()
        os.dup2(real, 2)  # closes the pipe's last write end, so the pump sees end-of-file
        thread.join(timeout=5)

    atexit.register(drain)
