"""`deepsuite tune`: one search = one MLflow parent run + one Keras Tuner project, both found again on re-run.

The search is named from everything that defines it (pipeline, tuner, objective, budget, preset, --set,
--fix), so running the same command after a crash or Ctrl-C reopens the same parent run and reloads the
tuner project under <store>/tuning/<pipeline>/<name>: completed trials are not re-run, the trial that
was cut short is retried into its own MLflow run. As in `deepsuite run`, the parent run is opened
before anything is checked, so a bad tuner, objective or space leaves a FAILED run with the reason.
This module drives a one-process search and a distributed chief; a worker is handed to worker.py. Both
build the search from the same `session.SearchSession`.
"""
from __future__ import annotations

from typing import Callable

from deepsuite.common import backend, distribution
from deepsuite.common.errors import ConfigError, DeepsuiteError
from deepsuite.common.pipeline import Pipeline
from deepsuite.common.redaction import redact
from deepsuite.tuning import distributed
from deepsuite.tuning.best import finalize
from deepsuite.tuning.hypermodel import ObjectiveMissing
from deepsuite.tuning.session import SearchOptions, SearchResult, SearchSession
from deepsuite.tuning.trials import failure_reason
from deepsuite.tuning.worker import run_worker


def run_search(options: SearchOptions, echo: Callable[[str], None] = print,
               on_trial_end: Callable[[dict], None] | None = None, *, pipeline: Pipeline) -> SearchResult:
    """Run (or resume) a search of `pipeline` (the app finds it by `options.pipeline`; tests pass a subclass)."""
    session = SearchSession(options, pipeline, echo, on_trial_end)
    if options.distributed == "worker":
        return run_worker(session)
    if options.distributed not in (None, "chief"):
        raise ConfigError(f"--distributed {options.distributed!r}: expected chief or worker")
    tracker, name, base = session.tracker, session.name, session.base

    found = tracker.find_runs(session.experiment, session.tags, max_results=1)
    if found and found[0].info.status == "FINISHED":
        tags = found[0].data.tags
        echo(f"search {name} already finished (run {found[0].info.run_id}): best trial id "
             f"{tags.get('deepsuite.best_trial')} {tags.get('deepsuite.best_value')}; "
             f"{tags.get('deepsuite.registered', 'not registered')}. Use --name to start another search.")
        return SearchResult(name, found[0].info.run_id, session.project_dir)
    env_tags = backend.configure(base.seed, base.deterministic, base.train.mixed_precision)  # trials set their own
    if note := backend.precision_note(env_tags):
        echo(note)
    env_tags |= distribution.plan(base.train).tags()  # refuses a batch the devices do not divide, before any trial
    tracker.start(session.experiment, f"search-{name}", {**session.tags, "deepsuite.preset": base.preset,
                                                          "deepsuite.tuner": options.tuner, **env_tags},
                  description=f"{options.tuner} search over {session.pipeline.name} (preset {base.preset})",
                  resume_run_id=found[0].info.run_id if found else None)
    session.parent_run_id = tracker.run_id
    echo(f"{'resuming' if found else 'starting'} search {name}: MLflow run {session.parent_run_id} in "
         f"{redact(tracker.uri)}; tuner project {session.project_dir}")
    try:
        session.define()
        session.log_definition()
        if options.distributed == "chief":
            distributed.require_grpc()
        distributed.set_role(options.distributed, options.host, options.port)
        if options.distributed == "chief":
            distributed.guard_chief(distributed.token())
        session.build_tuner(env_tags["device"])
        session.resume()
        if options.distributed == "chief":
            echo(f"chief serving search {name} on {options.host}:{options.port}; start workers with the same "
                 f"arguments plus --distributed worker --chief <this host>:{options.port}"
                 + (f" and the same {distributed.TOKEN_ENV}" if distributed.token() else ""))
        else:  # the chief runs no trials; it loads data for the best model only
            session.load_data()
        session.run_trials()
        best = finalize(session)
        _print_best(best, session.pipeline, echo)
        tracker.end("FINISHED", f"completed: {len(session.tuner.oracle.end_order)} trials, best trial id "
                                f"{best.trial_id} {session.objective}={best.value:.4f}")
        return SearchResult(name, session.parent_run_id, session.project_dir, best, session.progress.done_here)
    except KeyboardInterrupt:
        reason = "interrupted by the user (Ctrl-C); run the same command again to continue the search"
        session.abort("KILLED", reason)
        tracker.end("KILLED", reason)
        raise
    except BaseException as exc:
        error = _user_error(exc, options)
        session.abort("FAILED", str(error))
        tracker.end("FAILED", f"{type(error).__name__}: {error}")
        if error is exc:
            raise
        raise error from None


def _user_error(exc: BaseException, options: SearchOptions) -> BaseException:
    """Keras Tuner's own errors, said in the suite's terms (one line for the CLI)."""
    if isinstance(exc, ObjectiveMissing):
        return ConfigError(str(exc))
    if isinstance(exc, RuntimeError) and "consecutive failures" in str(exc):
        last = failure_reason(str(exc).split("\n", 1)[1] if "\n" in str(exc) else "")
        return DeepsuiteError(f"search stopped: {options.max_failures} trials failed in a row (last: {last}); "
                              "fix the search space or raise --max-failures")
    return exc


def _print_best(best, pipeline: Pipeline, echo: Callable[[str], None]) -> None:
    metrics = "  ".join(f"{k}={v:.4f}" for k, v in best.test_metrics.items())
    echo(f"best model test metrics: {metrics}")
    if best.registered:
        verb = pipeline.commands[0].name if pipeline.commands else "predict"  # generate, recommend, denoise...
        echo(f"registered {best.registered} (version {best.version}); "
             f"try: deepsuite {verb} {best.registered} <input>")
