"""`deepsuite tune ... --distributed worker --chief HOST:PORT`: run the trials a chief hands out.

A worker reaches the chief first (retrying with backoff), then finds the chief's parent run in the shared
MLflow store by the search's name (workers are started with the chief's arguments, so the name
matches), and logs each trial it runs as a child of that run. If the chief cannot be reached the
search cannot go on: the worker marks the search's parent run FAILED with the reason (creating it if
the chief never started) and stops with one clear line; restarting the chief reopens the run.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from deepsuite.common.errors import DeepsuiteError
from deepsuite.common.tracking import PIPELINE_TAG, Tracker
from deepsuite.tuning import distributed
from deepsuite.tuning.space import SearchSpace, parse_pins
from deepsuite.tuning.trials import KIND_TAG, SEARCH_TAG


def run_worker(options, pipeline, base, set_keys, name: str, tracker: Tracker, experiment: str, project_dir: Path,
               echo: Callable[[str], None], on_trial_end=None):
    from deepsuite.tuning.search import DEFAULT_MAX_TRIALS, SearchResult, resolve_objective

    distributed.require_grpc()
    host, port = distributed.parse_address(options.chief)
    search_tags = {KIND_TAG: "search", SEARCH_TAG: name, PIPELINE_TAG: pipeline.name}
    try:
        distributed.wait_for_chief(host, port, options.connect_timeout, echo)
    except DeepsuiteError as exc:
        _fail_search(tracker, experiment, name, search_tags, str(exc))
        raise
    parent = _running_parent(tracker, experiment, search_tags)
    if parent is None:
        raise DeepsuiteError(f"the chief at {host}:{port} is up but {tracker.uri} has no running search {name!r}: "
                             "start workers with the chief's own arguments (--preset, --set, --tuner, budget...) "
                             "and the same --tracking-uri")
    worker_id = options.worker_id or distributed.default_worker_id()
    distributed.set_role("worker", host, port, worker_id)

    from deepsuite.common import backend
    from deepsuite.tuning.hypermodel import PipelineHyperModel
    from deepsuite.tuning.progress import Progress
    from deepsuite.tuning.trials import TrialRuns
    from deepsuite.tuning.tuners import check_tuner, make_oracle, make_tuner

    check_tuner(options.tuner)
    objective, direction = resolve_objective(pipeline, options.objective, options.direction)
    space = SearchSpace(pipeline, base, parse_pins(options.fixes), set_keys, options.tune_precision)
    hp_space = space.declare()
    max_trials = options.max_trials or (None if options.tuner == "hyperband" else DEFAULT_MAX_TRIALS)
    hypermodel = PipelineHyperModel(space, objective, direction, backend.device())
    oracle = make_oracle(options.tuner, objective, direction, max_trials, base.train.epochs, options.factor,
                         base.seed, hp_space, options.max_failures)   # replaced by a client of the chief's
    runs = TrialRuns(tracker, experiment, parent.info.run_id, name, hypermodel, Progress(None, objective, echo),
                     tuner_id=worker_id, worker_echo=echo)
    runs.on_trial_end = on_trial_end
    echo(f"{worker_id}: joined search {name} (MLflow run {parent.info.run_id}) at {host}:{port}")
    tuner = make_tuner(options.tuner, runs, oracle, hypermodel, project_dir.parent, project_dir.name)
    try:
        from deepsuite.tuning.search import load_data_once

        load_data_once(hypermodel, echo)
        tuner.search(verbose=0)
    except KeyboardInterrupt:
        runs.abort("KILLED", f"worker {worker_id} interrupted (Ctrl-C); the chief retries the trial")
        raise
    except BaseException as exc:
        runs.abort("FAILED", f"worker {worker_id}: {type(exc).__name__}: {exc}")
        raise
    ran = runs.ended_here
    echo(f"{worker_id}: the chief has no more trials; this worker ran {len(ran)} ({', '.join(ran) or 'none'})")
    return SearchResult(name, parent.info.run_id, project_dir, None, len(ran))


def _running_parent(tracker: Tracker, experiment: str, tags: dict, wait: float = 30.0):
    """The chief opens its parent run before serving, so it is there; allow for a slow shared store."""
    deadline = time.time() + wait
    while True:
        found = [r for r in tracker.find_runs(experiment, tags, max_results=5) if r.info.status == "RUNNING"]
        if found or time.time() > deadline:
            return found[0] if found else None
        time.sleep(1.0)


def _fail_search(tracker: Tracker, experiment: str, name: str, tags: dict, reason: str) -> None:
    """Record in MLflow that the search could not go on (the chief is unreachable)."""
    found = tracker.find_runs(experiment, tags, max_results=1)
    if found and found[0].info.status == "FINISHED":
        return  # the search is over; a late worker has nothing to fail
    if found:
        tracker.end_run_by_id(found[0].info.run_id, "FAILED", reason)
        return
    tracker.start(experiment, f"search-{name}", tags, description="distributed search whose chief was unreachable")
    tracker.end("FAILED", reason)
