"""After the search: the best trial's model restored (or retrained), evaluated, exported and registered.

The export goes to the search's parent run exactly as `deepsuite run` exports (export/model.keras +
deepsuite.json + the MLflow model, a LoggedModel with the test metrics linked to it), and that model is registered
as `<pipeline>` with an alias (default "best"), so `deepsuite predict models:/<pipeline>@best <input>` and
`mlflow models serve -m models:/<pipeline>@best` work like a run id does.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepsuite.common import runner
from deepsuite.common.config import to_yaml
from deepsuite.common.errors import DeepsuiteError
from deepsuite.tuning.hypermodel import PipelineHyperModel, TrialContext
from deepsuite.tuning.progress import format_values
from deepsuite.tuning.space import trial_values
from deepsuite.tuning.trials import failure_reason
from deepsuite.tuning.tuners import best_completed, fresh_session, weights_only_restore


@dataclass
class BestModel:
    trial_id: str
    value: float
    values: dict[str, Any]
    test_metrics: dict[str, float] = field(default_factory=dict)
    how: str = ""
    model_uri: str | None = None
    registered: str | None = None      # models:/<name>@<alias>
    version: str | None = None


def restore(tuner, trial, hypermodel: PipelineHyperModel, work_dir: Path):
    """The best trial's weights from its best-epoch checkpoint; retrain its config when that is not here."""
    if Path(tuner._get_checkpoint_fname(trial.trial_id)).exists():
        try:
            with weights_only_restore():
                return tuner.load_model(trial), f"restored from trial id {trial.trial_id}'s best-epoch checkpoint"
        except Exception as exc:  # noqa: BLE001 - e.g. a Hyperband parent checkpoint on another machine
            reason = f"checkpoint not loadable ({type(exc).__name__})"
    else:
        reason = "checkpoint not on this machine"
    hp = copy.deepcopy(trial.hyperparameters)
    for key in ("tuner/trial_id", "tuner/initial_epoch"):
        hp.values.pop(key, None)
    fresh_session(tuner.gradients_before_search)
    model = hypermodel.build(hp)
    hypermodel.trial = TrialContext(f"{trial.trial_id}-retrain", None, work_dir)
    try:
        hypermodel.fit(hp, model)
    finally:
        hypermodel.trial = None
    return model, f"retrained with trial {trial.trial_id}'s config ({reason})"


def finalize(search) -> BestModel:
    """After `search` (a tuning.session.SearchSession whose tuner has run): its best completed trial's model
    restored, evaluated and exported to the parent run, and registered as models:/<pipeline>@<--alias>."""
    tuner, hypermodel, tracker, echo = search.tuner, search.hypermodel, search.tracker, search.echo
    oracle, project_dir, alias = tuner.oracle, search.project_dir, search.options.alias
    pipeline, objective = hypermodel.pipeline, hypermodel.objective
    best = best_completed(oracle)
    if best is None:
        failed = [t for t in oracle.trials.values() if t.status != "COMPLETED"]
        last = failure_reason(failed[-1].message) if failed else "no trial ran"
        raise DeepsuiteError(f"no trial completed ({len(failed)} failed; last: {last}); nothing to register - "
                             "fix the search space or the data")
    config = hypermodel.trial_config(best.hyperparameters)
    values = trial_values(best.hyperparameters)
    result = BestModel(best.trial_id, float(best.score), values)
    echo(f"best: trial id {best.trial_id}, {objective}={best.score:.4f}  [{format_values(values)}]")
    tracker.log_text(to_yaml(config), "best_config.yaml")
    tracker.set_tags({"deepsuite.best_trial": best.trial_id, "deepsuite.best_value": f"{best.score:.6g}",
                      **{f"deepsuite.best.{k}": v for k, v in values.items()}})
    tracker.log_metrics({f"best_{objective}": float(best.score)})

    model, result.how = restore(tuner, best, hypermodel, project_dir / "best-retrain")
    echo(f"best model {result.how}")
    splits = hypermodel.splits
    for context, size in splits.sizes().items():
        tracker.log_dataset(splits.info.name, splits.info.source, splits.info.digest, context, size)
    evaluation = pipeline.evaluate(model, splits, config)
    result.test_metrics = {f"test_{k}": float(v) for k, v in evaluation.metrics.items()}  # logged by _export
    out_dir = project_dir / "outputs"
    runner._write_report(pipeline, config, tracker, evaluation, {}, result.test_metrics, out_dir)
    _, result.model_uri = runner._export(pipeline, model, splits, config, tracker, out_dir, result.test_metrics)
    if result.model_uri:
        result.version = tracker.register_model(result.model_uri, pipeline.name, alias, {
            "search": search.name, "trial": best.trial_id, "objective": objective, "value": f"{best.score:.6g}",
            "parent_run": tracker.run_id})
        result.registered = f"models:/{pipeline.name}@{alias}"
        tracker.set_tags({"deepsuite.registered": f"{result.registered} (version {result.version})"})
    return result
