"""One process trains a run at a time: an exclusive lock on the run's work folder while it trains.

`flock` locks belong to the open file, so the operating system drops them when the process dies, SIGKILL
included: a crashed run never leaves a stale lock behind, and a live one can never be resumed (or counted
as "interrupted") by a second process.
"""
from __future__ import annotations

from pathlib import Path

from deepsuite.common.errors import DeepsuiteError

LOCK_FILE = "lock"


class RunBusy(DeepsuiteError):
    """Another live process holds the run."""


class RunLock:
    """Held from the moment a process starts (or resumes) training a run until it ends."""

    def __init__(self, work_dir: Path, run_id: str):
        import fcntl

        work_dir.mkdir(parents=True, exist_ok=True)
        self.handle = open(work_dir / LOCK_FILE, "a+")  # noqa: SIM115 - held open for the run's lifetime
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.close()
            raise RunBusy(f"run {run_id} is being trained right now by another process; wait for it to end "
                          "(or stop it) before resuming it") from None

    def release(self) -> None:
        if not self.handle.closed:
            self.handle.close()  # closing drops the lock


def is_locked(work_dir: Path) -> bool:
    """True when a live process trains the run whose work folder this is."""
    import fcntl

    path = work_dir / LOCK_FILE
    if not path.exists():
        return False
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False
