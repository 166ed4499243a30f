"""`deepsuite tune ... --workers N|per-device`: a Keras Tuner chief and N workers on this machine, one command.

This process only supervises (it never imports Keras, TensorFlow or JAX, so it holds no device): it starts
`deepsuite tune <the same arguments> --distributed chief` on a free loopback port and, once the chief
listens, N times `--distributed worker --chief 127.0.0.1:PORT --worker-id worker-<i>` - the same
chief/worker protocol as across machines (tuning/distributed.py). Every child gets DEEPSUITE_TUNE_TOKEN
(the user's, else a fresh random one) and its output, line by line, prefixed with its name.

Devices: with GPUs (CUDA_VISIBLE_DEVICES, else `nvidia-smi`), each worker sees only its own through
CUDA_VISIBLE_DEVICES (JAX, TensorFlow and PyTorch all honour it): N <= GPUs splits them into N groups, more
workers than GPUs share them round-robin with on-demand GPU memory (XLA_PYTHON_CLIENT_PREALLOCATE=false,
TF_FORCE_GPU_ALLOW_GROWTH=true). The chief runs no trials; it sees the first GPU, with on-demand memory,
for the best model's evaluation after the workers finish. On CPU nothing is pinned: every worker shares all
cores. `per-device` is one worker per GPU (one on a CPU-only machine).

Stopping: the chief ends when the search does, after its workers have asked for a trial and got none; a
worker still running then is stopped. A worker that dies is reported and started again once under the same
id, so the chief hands it back its unfinished trial (Keras Tuner waits for every worker id it has seen); if
no worker is left the chief is stopped. Ctrl-C or SIGTERM send SIGINT to the workers, then to the chief
(each records its run as KILLED, as a lone `deepsuite tune` does; the same command resumes), and SIGKILL to
whatever is left after a grace period. Children run in their own process groups (a terminal's Ctrl-C reaches
only this process) and, on Linux, are signalled by the kernel if this process dies without cleaning up
(PR_SET_PDEATHSIG: SIGINT to the chief, SIGKILL to workers), so none is left behind.
"""
from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, TextIO

from deepsuite.app.ports import LOOPBACK, free_port
from deepsuite.common.errors import ConfigError, DeepsuiteError
from deepsuite.tuning.distributed import TOKEN_ENV

GRACE_S = 30.0            # after SIGINT (or the chief's end), before SIGKILL
NUDGE_S = 10.0            # SIGINT again while a child still runs
RESTARTS_PER_WORKER = 1
SHARED_GPU_ENV = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false", "TF_FORCE_GPU_ALLOW_GROWTH": "true"}
try:  # looked up here: a child between fork and exec must not import (another thread may hold the import lock)
    import ctypes

    _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
except (ImportError, OSError, AttributeError):
    _PRCTL = None
PR_SET_PDEATHSIG = 1


FLEET_OWNS = {"workers", "distributed", "port", "host", "chief", "worker_id", "connect_timeout"}


def forwarded_args(parser: argparse.ArgumentParser, args) -> list[str]:
    """The tune command line that gives `args` (less what the fleet sets per child): the chief and every worker
    get the same arguments, so they name the same search."""
    argv: list[str] = []
    for action in parser._actions:
        if action.dest in FLEET_OWNS or action.dest == "help":
            continue
        value = getattr(args, action.dest, None)
        if not action.option_strings:
            argv.append(str(value))
        elif isinstance(action, argparse._StoreTrueAction):
            argv += [action.option_strings[-1]] if value else []
        elif isinstance(action, argparse._AppendAction):
            for item in value or []:
                argv += [action.option_strings[-1], str(item)]
        elif value is not None and value != _parsed_default(action):
            argv += [action.option_strings[-1], str(value)]
    return argv


def _parsed_default(action: argparse.Action):
    """argparse passes a string default through the option's type (--store's "mlruns" becomes a Path)."""
    if isinstance(action.default, str) and action.type is not None:
        return action.type(action.default)
    return action.default


def parse_workers(text: str) -> int | None:
    """--workers N (a count) or per-device (None: one per GPU)."""
    if text == "per-device":
        return None
    if not text.lstrip("-").isdigit() or int(text) < 1:
        raise ConfigError(f"--workers {text!r}: expected a number of workers (1 or more) or per-device")
    return int(text)


def visible_gpus(env: dict[str, str] | None = None) -> tuple[list[str], bool]:
    """(GPU ids as CUDA_VISIBLE_DEVICES takes them, whether they are nvidia-smi's PCI-order indices).

    Asked without initialising CUDA (this process must not hold a device): CUDA_VISIBLE_DEVICES when set
    ("" or -1 hide every GPU), else the indices `nvidia-smi` lists; none when neither says anything.
    """
    env = os.environ if env is None else env
    given = env.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        ids = []
        for item in (part.strip() for part in given.split(",")):
            if not item or item.startswith("-"):
                break  # CUDA stops at the first invalid entry
            ids.append(item)
        return ids, False
    try:
        listed = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True,
                                text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return [], False
    ids = [line.strip() for line in listed.stdout.splitlines() if line.strip().isdigit()]
    return (ids, True) if listed.returncode == 0 else ([], False)


def assign(workers: int | None, gpus: list[str]) -> list[list[str]]:
    """Each worker's GPUs ([] = not pinned): N <= GPUs in contiguous groups, more workers round-robin."""
    count = max(1, len(gpus)) if workers is None else workers
    if not gpus:
        return [[] for _ in range(count)]
    if count <= len(gpus):
        size, extra = divmod(len(gpus), count)
        groups, start = [], 0
        for index in range(count):
            end = start + size + (index < extra)
            groups.append(gpus[start:end])
            start = end
        return groups
    return [[gpus[index % len(gpus)]] for index in range(count)]


@dataclass
class Child:
    name: str
    command: list[str]
    env: dict[str, str]
    process: subprocess.Popen | None = None
    restarts: int = 0
    threads: list[threading.Thread] = field(default_factory=list)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Fleet:
    """The chief and its workers as child processes of this one; `run()` returns the exit code to use."""

    def __init__(self, tune_args: list[str], workers: int | None, debug: bool = False, port: int | None = None,
                 echo: Callable[[str], None] = print, out: TextIO | None = None, err: TextIO | None = None):
        self.echo, self.out, self.err = echo, out or sys.stdout, err or sys.stderr
        self.lock = threading.Lock()
        gpus, pci_order = visible_gpus()
        self.groups = assign(workers, gpus)
        self.port = port or free_port(LOOPBACK)
        token = os.environ.get(TOKEN_ENV) or secrets.token_urlsafe(32)
        base_env = {**os.environ, TOKEN_ENV: token, "PYTHONUNBUFFERED": "1"}
        if pci_order:
            base_env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # nvidia-smi's numbering, not CUDA's fastest-first
        cli = [sys.executable, "-m", "deepsuite.app.cli", *(["--debug"] if debug else []), "tune", *tune_args]
        width = max(len("chief"), len(f"worker-{len(self.groups)}"))
        self.prefix = lambda name: f"{name:<{width}} | "
        chief_env = dict(base_env)
        if gpus:
            chief_env.update(CUDA_VISIBLE_DEVICES=gpus[0], **SHARED_GPU_ENV)
        self.chief = Child("chief", [*cli, "--distributed", "chief", "--host", LOOPBACK, "--port", str(self.port)],
                           chief_env)
        shared = len(self.groups) > len(gpus)
        self.workers = []
        for index, group in enumerate(self.groups, start=1):
            name = f"worker-{index}"
            env = dict(base_env)
            if group:
                env["CUDA_VISIBLE_DEVICES"] = ",".join(group)
                if shared:
                    env.update(SHARED_GPU_ENV)
            self.workers.append(Child(name, [*cli, "--distributed", "worker", "--chief", f"{LOOPBACK}:{self.port}",
                                             "--worker-id", name, "--connect-timeout", "600"], env))
        self.user_token = TOKEN_ENV in os.environ and bool(os.environ[TOKEN_ENV])

    # -- the plan -------------------------------------------------------------------------------

    def describe(self) -> list[str]:
        token = f"{TOKEN_ENV} {'from the environment' if self.user_token else 'fresh and random'}"
        lines = [f"fleet: a chief on {LOOPBACK}:{self.port} and {len(self.workers)} worker(s) on this machine "
                 f"({token})"]
        if not any(self.groups):
            lines.append("fleet: no GPU visible: nothing is pinned, the workers share this machine's CPU cores")
        else:
            lines.append(f"fleet: chief on GPU {self.chief.env['CUDA_VISIBLE_DEVICES']} (on-demand memory, for "
                         "the best model's evaluation)")
            for worker, group in zip(self.workers, self.groups):
                lines.append(f"fleet: {worker.name} on GPU {','.join(group)}"
                             + (" (shared, on-demand memory)" if "TF_FORCE_GPU_ALLOW_GROWTH" in worker.env else ""))
        return lines

    # -- children -------------------------------------------------------------------------------

    def start(self, child: Child) -> None:
        child.process = subprocess.Popen(child.command, env=child.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         stdin=subprocess.DEVNULL, text=True, errors="replace", bufsize=1,
                                         start_new_session=True,
                                         preexec_fn=partial(_child_setup, child is self.chief))
        child.threads = [self._relay(child.process.stdout, self.out, child.name),
                         self._relay(child.process.stderr, self.err, child.name)]
        self.echo(f"fleet: started {child.name} (pid {child.process.pid})")

    def _relay(self, stream, sink: TextIO, name: str) -> threading.Thread:
        def pump():
            for line in stream:
                with self.lock:
                    sink.write(self.prefix(name) + line.rstrip("\n") + "\n")
                    sink.flush()
            stream.close()
        thread = threading.Thread(target=pump, name=f"fleet-{name}", daemon=True)
        thread.start()
        return thread

    def say(self, text: str) -> None:
        with self.lock:
            self.echo(text)
            sys.stdout.flush()

    def children(self) -> list[Child]:
        return [self.chief, *self.workers]

    def stop(self, children: list[Child], grace: float = GRACE_S) -> None:
        """SIGINT (each child records its run KILLED), workers before the chief (a worker waiting on the chief
        leaves only once its call returns), then SIGKILL whatever is left after `grace` seconds."""
        self._interrupt([c for c in children if c is not self.chief], grace)
        self._interrupt([c for c in children if c is self.chief], grace)
        for child in children:
            if child.process is not None:
                _signal_group(child.process, signal.SIGKILL)  # what is left, and strays of an exited child
                child.process.wait()
                for thread in child.threads:
                    thread.join(5)

    def _interrupt(self, children: list[Child], grace: float) -> None:
        """SIGINT, again every NUDGE_S seconds while a child runs (Python drops a KeyboardInterrupt that lands in
        a garbage-collection callback, e.g. JAX's, and the child would train on), SIGKILL after `grace`."""
        running = [c for c in children if c.alive()]
        for child in running:
            _signal_group(child.process, signal.SIGINT)
        start = time.monotonic()
        nudged = start
        while running and time.monotonic() - start < grace:
            time.sleep(0.2)
            running = [c for c in running if c.alive()]
            if running and time.monotonic() - nudged >= NUDGE_S:
                nudged = time.monotonic()
                for child in running:
                    _signal_group(child.process, signal.SIGINT)
        for child in running:
            self.say(f"fleet: {child.name} did not stop within {grace:.0f}s of SIGINT; killing it")
            _signal_group(child.process, signal.SIGKILL)

    # -- the run --------------------------------------------------------------------------------

    def run(self) -> int:
        for line in self.describe():
            self.say(line)
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
        try:
            self.start(self.chief)
            if not self._wait_for_chief():
                return self._chief_ended()
            for worker in self.workers:
                self.start(worker)
            return self._supervise()
        except KeyboardInterrupt:
            self.say("fleet: interrupted; stopping the chief and the workers (the same command resumes the search)")
            self.stop(self.children())
            raise
        finally:
            self.stop(self.children())
            signal.signal(signal.SIGTERM, previous)

    def _wait_for_chief(self) -> bool:
        """True once the chief's oracle listens (its parent run is open by then); False if it exited first."""
        while self.chief.alive():
            try:
                with socket.create_connection((LOOPBACK, self.port), timeout=1):
                    return True
            except OSError:
                time.sleep(0.3)
        return False

    def _supervise(self) -> int:
        while True:
            if not self.chief.alive():
                return self._chief_ended()
            for worker in self.workers:
                code = None if worker.process is None else worker.process.poll()
                if code in (None, 0) or worker.restarts < 0:
                    continue
                if worker.restarts < RESTARTS_PER_WORKER:
                    worker.restarts += 1
                    self.say(f"fleet: {worker.name} exited with code {code} (its output is above); starting it "
                             "again under the same id, so the chief hands it back its unfinished trial")
                    self.start(worker)
                else:
                    worker.restarts = -1  # reported, not restarted again
                    self.say(f"fleet: {worker.name} exited with code {code} again; not restarting it")
            if all(not w.alive() for w in self.workers) and any(w.restarts < 0 for w in self.workers):
                self.say("fleet: no worker is left to run trials; stopping the chief (fix the cause above, then "
                         "run the same command to resume)")
                self.stop([self.chief])
                return 1
            time.sleep(0.2)

    def _chief_ended(self) -> int:
        code = self.chief.process.wait()
        for thread in self.chief.threads:  # its last lines before ours
            thread.join(5)
        left = [w for w in self.workers if w.alive()]
        deadline = time.monotonic() + (GRACE_S if code == 0 else 0)
        while left and time.monotonic() < deadline:  # workers leave once they are told there is nothing left
            time.sleep(0.2)
            left = [w for w in left if w.alive()]
        if left:
            self.say(f"fleet: the chief exited (code {code}); stopping {', '.join(w.name for w in left)}")
            self.stop(left)
        failed = [f"{w.name} ({w.process.returncode})" for w in self.workers
                  if w.process is not None and w.process.returncode not in (0, None) and w not in left]
        if code != 0:
            raise DeepsuiteError(f"the tuning chief exited with code {code} (its output is above, prefixed 'chief')")
        ran = ", ".join(w.name for w in self.workers if w.process is not None)
        self.say(f"fleet: search finished; chief and workers ({ran}) have exited"
                 + (f"; with errors: {', '.join(failed)}" if failed else ""))
        return 0


def _child_setup(chief: bool) -> None:
    """In each child before exec: Ctrl-C handled as in a terminal's foreground, and (Linux) a signal when this
    supervisor dies, so a SIGKILLed supervisor leaves nothing running: SIGINT to the chief, which records the
    search KILLED; SIGKILL to workers, whose blocking calls to a chief that is gone would never return
    (a re-run closes the trial runs they leave RUNNING)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, int(signal.SIGINT if chief else signal.SIGKILL))


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def run_fleet(tune_args: list[str], workers: int | None, debug: bool = False, port: int | None = None) -> int:
    return Fleet(tune_args, workers, debug, port).run()
