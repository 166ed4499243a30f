"""`deepsuite tune ... --distributed worker --chief HOST:PORT`: run the trials a chief hands out.

A worker reaches the chief first (retrying with backoff), then finds the chief's parent run in the shared
MLflow store by the search's name (workers are started with the chief's arguments, so the name
matches), and logs each trial it runs as a child of that run. If the chief cannot be reached the
search cannot go on: the worker marks the search's parent run FAILED with the reason (creating it if
the chief never started) and stops with one clear line; restarting the chief reopens the run.
"""
from __future__ import annotations

import time

from deepsuite.common import backend
from deepsuite.common.errors import DeepsuiteError
from deepsuite.common.redaction import redact
from deepsuite.tuning import distributed
from deepsuite.tuning.session import SearchResult, SearchSession


def run_worker(session: SearchSession) -> SearchResult:
    """Join the search `session` names (its options carry --chief), run trials until the chief has none left."""
    options, echo = session.options, session.echo
    distributed.require_grpc()
    host, port = distributed.parse_address(options.chief)
    try:
        distributed.wait_for_chief(host, port, options.connect_timeout, echo)
    except DeepsuiteError as exc:
        _fail_search(session, str(exc))
        raise
    parent = _running_parent(session)
    if parent is None:
        raise DeepsuiteError(f"the chief at {host}:{port} is up but {redact(session.tracker.uri)} has no running search "
                             f"{session.name!r}: start workers with the chief's own arguments (--preset, --set, "
                             "--tuner, budget...) and the same --tracking-uri")
    worker_id = options.worker_id or distributed.default_worker_id()
    distributed.set_role("worker", host, port, worker_id)
    session.parent_run_id, session.tuner_id, session.worker_echo = parent.info.run_id, worker_id, echo

    session.define()
    echo(f"{worker_id}: joined search {session.name} (MLflow run {session.parent_run_id}) at {host}:{port}")
    session.build_tuner(backend.device())
    distributed.authenticate_worker(session.tuner, host, port, distributed.token())
    try:
        session.load_data()
        session.run_trials()
    except KeyboardInterrupt:
        session.abort("KILLED", f"worker {worker_id} interrupted (Ctrl-C); the chief retries the trial")
        raise
    except BaseException as exc:
        if distributed.refused(exc):
            raise DeepsuiteError(f"the chief at {host}:{port} refused this worker: set {distributed.TOKEN_ENV} to "
                                 "the chief's token" + (" (this one differs)" if distributed.token() else "")) from None
        session.abort("FAILED", f"worker {worker_id}: {type(exc).__name__}: {exc}")
        raise
    ran = session.runs.ended_here
    echo(f"{worker_id}: the chief has no more trials; this worker ran {len(ran)} ({', '.join(ran) or 'none'})")
    return SearchResult(session.name, session.parent_run_id, session.project_dir, None, len(ran))


def _running_parent(session: SearchSession, wait: float = 30.0):
    """The chief opens its parent run before serving, so it is there; allow for a slow shared store."""
    deadline = time.time() + wait
    while True:
        found = [r for r in session.tracker.find_runs(session.experiment, session.tags, max_results=5)
                 if r.info.status == "RUNNING"]
        if found or time.time() > deadline:
            return found[0] if found else None
        time.sleep(1.0)


def _fail_search(session: SearchSession, reason: str) -> None:
    """Record in MLflow that the search could not go on (the chief is unreachable)."""
    tracker = session.tracker
    found = tracker.find_runs(session.experiment, session.tags, max_results=1)
    if found and found[0].info.status == "FINISHED":
        return  # the search is over; a late worker has nothing to fail
    if found:
        tracker.end_run_by_id(found[0].info.run_id, "FAILED", reason)
        return
    tracker.start(session.experiment, f"search-{session.name}", session.tags,
                  description="distributed search whose chief was unreachable")
    tracker.end("FAILED", reason)
