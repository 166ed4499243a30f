"""The MLflow side of a search: one child run per trial under the search's parent run.

A trial's run is found again by its tags (parent run id + trial id), so a trial that a crash cut short
and Keras Tuner retries after the restart reopens the same run instead of adding a second one; this
works the same for trials run by distributed workers, which share the tracking store, not a disk.
"""
from __future__ import annotations

import math
import re
import time
from pathlib import Path
from typing import Callable

from deepsuite.common.config import flatten
from deepsuite.common.tracking import PIPELINE_TAG, RUN_STATUS_TAG, Tracker
from deepsuite.tuning.hypermodel import PipelineHyperModel, TrialContext
from deepsuite.tuning.progress import Progress, format_values
from deepsuite.tuning.space import trial_values
from deepsuite.tuning.tuners import best_completed

KIND_TAG = "deepsuite.kind"            # "search" on the parent, "trial" on each child
SEARCH_TAG = "deepsuite.search"        # the search's name (same command -> same name -> resume)
PARENT_TAG = "deepsuite.search_run"    # the parent run id, on each child
TRIAL_TAG = "deepsuite.trial_id"       # Keras Tuner's trial id, on each child
STATUS_TAG = "deepsuite.trial_status"  # completed | failed


def failure_reason(message: str | None) -> str:
    """The last line of Keras Tuner's traceback, without module paths: `TrainingDiverged: loss became nan`."""
    lines = [line.strip() for line in (message or "").splitlines() if line.strip()]
    if not lines:
        return "failed without a message"
    match = re.match(r"^([\w.]+): (.*)$", lines[-1])
    return f"{match.group(1).rsplit('.', 1)[-1]}: {match.group(2)}" if match else lines[-1]


def overhead_split(marks: dict[str, float]) -> dict[str, float]:
    """Seconds per stage of a trial outside fit(): where the per-trial overhead goes."""
    stages = [("overhead.oracle_create", "create_start", "begin_start"),
              ("overhead.mlflow_begin", "begin_start", "begin_end"),
              ("overhead.clear_session", "begin_end", "build_start"),
              ("overhead.build", "build_start", "build_end"),
              ("overhead.oracle_end", "fit_end", "oracle_end")]
    return {name: marks[b] - marks[a] for name, a, b in stages if a in marks and b in marks}


class TrialRuns:
    """Opens, resumes and closes trial runs (tuner side) and reports ended trials (oracle side)."""

    def __init__(self, search):
        """`search`: the tuning.session.SearchSession this process takes part in, its parent run open or found
        and its hypermodel and progress built."""
        self.parent: Tracker = search.tracker
        self.experiment: str = search.experiment
        self.parent_run_id: str = search.parent_run_id
        self.search_name: str = search.name
        self.hypermodel: PipelineHyperModel = search.hypermodel
        self.objective = self.hypermodel.objective
        self.progress: Progress = search.progress
        self.tuner_id: str = search.tuner_id
        self.worker_echo: Callable[[str], None] | None = search.worker_echo  # workers print their own trials
        self.on_trial_end: Callable[[dict], None] | None = search.on_trial_end  # test/bench hook: a trial's numbers
        self.child = Tracker(self.parent.uri, self.parent.store_dir)
        self.trial_started = time.time()
        self.ended_here: list[str] = []                             # trial ids this process ran
        self.known: dict | None = None       # trial id -> run, when this process owns all the search's trials

    # -- tuner side: the process that runs the trial ------------------------------------------------

    def before_trial(self) -> None:
        self.trial_started = time.time()

    def load_known_runs(self) -> None:
        """One query for all of this search's trial runs (one-process search; workers ask per trial)."""
        self.known = {r.data.tags.get(TRIAL_TAG): r for r in self.child.find_runs(self.experiment,
                                                                                  {PARENT_TAG: self.parent_run_id})}

    def existing_run(self, trial_id: str):
        if self.known is not None:
            return self.known.get(trial_id)
        runs = self.child.find_runs(self.experiment, {PARENT_TAG: self.parent_run_id, TRIAL_TAG: trial_id})
        return runs[0] if runs else None

    def begin(self, trial, work_dir: Path) -> TrialContext:
        begin_start = time.time()
        hp = trial.hyperparameters
        tags = {PIPELINE_TAG: self.hypermodel.pipeline.name, KIND_TAG: "trial", SEARCH_TAG: self.search_name,
                PARENT_TAG: self.parent_run_id, TRIAL_TAG: trial.trial_id, "deepsuite.tuner_id": self.tuner_id}
        previous = self.existing_run(trial.trial_id)
        logged: set[int] = set()
        params = {f"hp.{k}": v for k, v in hp.values.items()}
        try:
            params.update(flatten(self.hypermodel.trial_config(hp).model_dump(mode="json")))
        except Exception:  # noqa: BLE001 - a bad combination fails the trial in build(), with its reason
            pass
        if previous is not None:
            logged = {step for step, _ in self.child.metric_history(previous.info.run_id, "loss")}
            self.child.start_child(self.experiment, previous.info.run_name, {**tags, "deepsuite.resumed": "true"},
                                   self.parent_run_id, resume_run_id=previous.info.run_id)
            self.child.log_params(params)   # skips those logged before the crash
        else:
            self.child.start_child(self.experiment, f"trial-{trial.trial_id}", tags, self.parent_run_id)
            self.child.log_batch(params=params)   # (trials are not retried within one process: no lookup later)
        context = TrialContext(trial.trial_id, self.child, work_dir, logged_steps=logged)
        context.marks.update(create_start=self.trial_started, begin_start=begin_start)
        context.mark("begin_end")
        return context

    def end(self, trial, context: TrialContext | None) -> None:
        """Close the trial's run: FINISHED with its objective, or FAILED with the reason."""
        if context is None or self.child.run_id is None:
            return
        value = context.objective_value
        completed = trial.status == "COMPLETED" and value is not None and math.isfinite(value)
        reason = None if completed else failure_reason(trial.message) if trial.message else \
            f"objective {self.objective} was not finite ({value})"
        context.mark("end_start")
        seconds = time.time() - self.trial_started
        numbers = {"trial_seconds": seconds, "fit_seconds": context.fit_seconds,
                   "overhead_seconds": seconds - context.fit_seconds, "epochs_run": context.epochs_run,
                   **overhead_split(context.marks)}
        if completed:
            numbers[f"best_{self.objective}"] = value
        if trial.message:
            self.child.log_text(trial.message, "failure.txt")  # the full traceback, for the curious
        tags = {STATUS_TAG: "completed" if completed else "failed", **({RUN_STATUS_TAG: reason} if reason else {})}
        self.child.log_batch(metrics=numbers, tags=tags)
        self.child.end("FINISHED" if completed else "FAILED")
        self.ended_here.append(trial.trial_id)
        if self.worker_echo is not None:
            result = f"{self.objective}={value:.4f}" if completed else f"FAILED ({reason})"
            self.worker_echo(f"{self.tuner_id}: trial {trial.trial_id} {result}  "
                             f"[{format_values(trial.hyperparameters.values)}]  {seconds:.0f}s")
        if self.on_trial_end is not None:
            self.on_trial_end({"trial_id": trial.trial_id, "completed": completed, "reason": reason, **numbers})

    def abort(self, status: str, reason: str) -> None:
        """The search stopped mid-trial (Ctrl-C, a fatal error): close the open trial run."""
        if self.child.run_id is not None:
            self.child.end(status, reason)

    # -- oracle side: the process that owns the search ---------------------------------------------

    def report(self, oracle, trial) -> None:
        """After each ended trial: the best value so far on the parent run, and the progress line."""
        failed = trial.status != "COMPLETED" or trial.score is None or not math.isfinite(trial.score)
        best = best_completed(oracle)
        best_value = best.score if best else None
        step = self.progress.done + 1
        metrics = {f"trial_{self.objective}": None if failed else trial.score,
                   "trials_failed": sum(t.status == "FAILED" for t in oracle.trials.values())}
        if best_value is not None:
            metrics[f"best_{self.objective}"] = best_value
        self.parent.log_batch(metrics=metrics, tags={"deepsuite.best_trial": best.trial_id} if best else {},
                              run_id=self.parent_run_id, step=step)
        self.progress.trial_ended(trial_values(trial.hyperparameters) | {
            k: v for k, v in trial.hyperparameters.values.items() if k in ("tuner/epochs", "tuner/initial_epoch")},
            None if failed else trial.score, best_value, failure=failure_reason(trial.message) if failed else None,
            trial_id=trial.trial_id)

    def reconcile(self, oracle) -> None:
        """After a restart: close trial runs left RUNNING whose trial the oracle already recorded as ended."""
        for run in self.child.find_runs(self.experiment, {PARENT_TAG: self.parent_run_id}):
            trial = oracle.trials.get(run.data.tags.get(TRIAL_TAG, ""))
            if run.info.status != "RUNNING" or trial is None or trial.trial_id not in oracle.end_order:
                continue
            if trial.status == "COMPLETED":
                self.child.end_run_by_id(run.info.run_id, "FINISHED")
            else:
                self.child.end_run_by_id(run.info.run_id, "FAILED", failure_reason(trial.message))
