"""Search-space checks, Hyperband trial arithmetic and the progress line: fast, no training."""
from __future__ import annotations

import json
import math

import keras_tuner as kt
import pytest

from deepsuite.app import registry
from deepsuite.common.config import resolve
from deepsuite.common.errors import ConfigError
from deepsuite.tuning.progress import Progress, duration
from deepsuite.tuning.session import SearchOptions, resolve_objective, search_name
from deepsuite.tuning.space import SearchSpace, parse_pins
from deepsuite.tuning.tuners import Budget, check_tuner, hyperband_trials, make_oracle

IC = registry.get("image-classification")


def space(pins=(), sets=()):
    base = resolve(IC.config_cls, IC.presets, "smoke", None, list(sets))
    set_keys = {k: v for k, v in (s.split("=", 1) for s in sets)}
    return SearchSpace(IC, base, parse_pins(list(pins)), {k: parse_pins([f"{k}={v}"])[k] for k, v in set_keys.items()})


def test_declared_space_is_the_pipelines_with_pins_fixed():
    hp = space(pins=["model.dropout=0.2"]).declare()
    names = {p.name: type(p).__name__ for p in hp.space}
    assert names["model.dropout"] == "Fixed" and names["train.learning_rate"] == "Float"
    assert {"model.base_width", "model.blocks_per_stage", "train.batch_size"} <= names.keys()
    config = space(pins=["model.dropout=0.2"]).apply(hp)   # defaults of the space, the pin applied
    assert config.model.dropout == 0.2 and config.model.widths == [16, 32]   # smoke's 8 is not in the space


@pytest.mark.parametrize("name", registry.names())
def test_the_spaces_defaults_are_the_recipe_so_the_first_trial_is_the_preset(name):
    pipeline = registry.get(name)
    base = resolve(pipeline.config_cls, pipeline.presets, "default")
    search = SearchSpace(pipeline, base)
    first, recipe = search.apply(search.declare()).model_dump(), base.model_dump()
    differ = {f"{section}.{key}": (value, recipe[section][key]) for section, values in first.items()
              if isinstance(values, dict) for key, value in values.items()
              if recipe[section][key] is not None and value != recipe[section][key]}
    assert differ == {}   # None in a preset means "the model's default", which the space may spell out


def test_set_on_a_tuned_key_pins_it():
    s = space(sets=["train.batch_size=256"])
    hp = s.declare()
    assert s.pins == {"train.batch_size": 256}
    assert next(p for p in hp.space if p.name == "train.batch_size").value == 256


@pytest.mark.parametrize("pins, sets, message", [
    (["train.batch_size=100"], [], "contradictory search space: train.batch_size=100 is pinned but the space allows one of [64, 128, 256]"),
    (["model.dropout=0.9"], [], "allows float in [0.1, 0.5]"),
    (["model.nonsense=1"], [], "--fix model.nonsense: no such hyperparameter"),
    ([], ["model.widths=[8]"], "--set model.widths=[8] is overridden by image-classification's search space"),
    (["train.batch_size=64"], ["train.batch_size=128"], "contradictory request"),
    (["model.base_width=16", "model.blocks_per_stage=1-1", "model.dense_units=128",
      "model.dropout=0.1", "train.learning_rate=0.001", "train.batch_size=64"], [], "empty search space: every hyperparameter"),
])
def test_bad_spaces_are_one_clear_config_error(pins, sets, message):
    with pytest.raises(ConfigError) as error:
        space(pins, sets).declare()
    assert message in str(error.value) and "\n" not in str(error.value)


def test_pipeline_without_a_space_is_an_empty_space():
    class NoSpace(type(IC)):
        def search_space(self, hp, config):
            return super(type(IC), self).search_space(hp, config)

    base = resolve(IC.config_cls, IC.presets, "smoke")
    with pytest.raises(ConfigError, match="empty search space: pipeline 'image-classification' defines no"):
        no_space = NoSpace()
        no_space.name = IC.name  # the registry names the instances it makes
        SearchSpace(no_space, base).declare()


def test_unknown_tuner_and_objective_names():
    with pytest.raises(ConfigError, match=r"unknown tuner 'hyperbnd'; did you mean 'hyperband'\?"):
        check_tuner("hyperbnd")
    with pytest.raises(ConfigError, match="unknown objective 'val acc'"):
        resolve_objective(IC, "val acc", None)
    assert resolve_objective(IC, None, None) == ("val_accuracy", "max")
    assert resolve_objective(IC, "val_loss", None) == ("val_loss", "min")
    assert resolve_objective(IC, "val_auc", None) == ("val_auc", "max")


@pytest.mark.parametrize("max_epochs, factor", [(3, 3), (4, 3), (9, 3), (20, 3), (10, 2)])
def test_hyperband_trial_count_matches_the_oracle(max_epochs, factor):
    oracle = make_oracle("hyperband", "score", "max", Budget(None, max_epochs, factor, max_failures=3), 1,
                         kt.HyperParameters())
    oracle.hyperparameters.Float("x", 0, 1)
    oracle._set_project_dir("/tmp/deepsuite-test-kt", f"count-{max_epochs}-{factor}")
    oracle.save = lambda: None  # count only
    oracle._save_trial = lambda trial: None
    created = 0
    while True:
        trial = oracle.create_trial("tuner0")
        if trial.status == "STOPPED":
            break
        created += 1
        oracle.update_trial(trial.trial_id, {"score": trial.hyperparameters.get("x")})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    assert created == hyperband_trials(max_epochs, factor)


def _run_oracle(kind, tmp_path, trials=12):
    """Drive an oracle without training: trial 0 scores 1.0, every later one less; returns their values."""
    space = kt.HyperParameters()
    space.Choice("a", [1, 2, 3, 4], default=2)
    space.Float("b", 0.0, 1.0, default=0.5)
    space.Choice("c", ["x", "y", "z"], default="y")
    space.Int("d", 1, 9, default=5)
    oracle = make_oracle(kind, "score", "max", Budget(40, 9, 3, max_failures=3), 7, space)
    oracle._set_project_dir(str(tmp_path), kind)
    drawn = []
    for i in range(trials):
        trial = oracle.create_trial("tuner0")
        values = trial.hyperparameters.values
        if values.get("tuner/initial_epoch", 0) == 0:   # a new configuration, not a continued one
            drawn.append({k: v for k, v in values.items() if not k.startswith("tuner/")})
        oracle.update_trial(trial.trial_id, {"score": 1.0 if i == 0 else 0.5 - i / 100})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    return drawn


@pytest.mark.parametrize("kind", ["random", "hyperband"])
def test_first_trial_is_the_spaces_defaults(kind, tmp_path):
    assert _run_oracle(kind, tmp_path, trials=2)[0] == {"a": 2, "b": 0.5, "c": "y", "d": 5}


def test_hyperband_draws_about_half_its_configurations_next_to_the_best(tmp_path):
    best, *later = _run_oracle("hyperband", tmp_path, trials=30)
    changed = [sum(not math.isclose(value[k], best[k]) if k == "b" else value[k] != best[k] for k in best)
               for value in later]
    neighbours = [n for n in changed if n in (1, 2)]
    assert 0.3 < len(neighbours) / len(changed) < 0.9 and 0 not in changed
    random_only = _run_oracle("random", tmp_path / "random", trials=30)[1:]
    assert sum(sum(v[k] != best[k] for k in best) <= 2 for v in random_only) < len(neighbours)


def test_search_name_is_stable_and_changes_with_the_search():
    base = resolve(IC.config_cls, IC.presets, "smoke")
    one = SearchOptions("image-classification", tuner="random", max_trials=3, preset="smoke")
    assert search_name(one, base) == search_name(SearchOptions("image-classification", tuner="random",
                                                                max_trials=3, preset="smoke", port=9000), base)
    assert search_name(one, base) != search_name(SearchOptions("image-classification", tuner="random",
                                                                max_trials=4, preset="smoke"), base)
    assert search_name(one, base).startswith("random-smoke-")


def test_progress_line_has_count_values_objective_best_and_eta():
    lines = []
    progress = Progress(4, "val_accuracy", lines.append)
    progress.trial_ended({"model.dropout": 0.2, "tuner/epochs": 3, "tuner/initial_epoch": 1}, 0.81234, 0.81234)
    progress.trial_ended({"model.dropout": 0.3}, None, 0.81234, failure="TrainingDiverged: loss became nan")
    assert lines[0].startswith("trial 1/4  val_accuracy=0.8123  best=0.8123  [model.dropout=0.2 epochs 1->3]")
    assert "elapsed" in lines[0] and "ETA" in lines[0]
    assert lines[1].startswith("trial 2/4  FAILED (TrainingDiverged: loss became nan)  best=0.8123")
    assert duration(3725) == "1h02m" and duration(65) == "1m05s" and duration(5) == "5s"


@pytest.mark.parametrize("kind", ["random", "bayesian"])
def test_oracles_propose_trials_inside_the_declared_space(kind, tmp_path):
    declared = space(pins=["model.dropout=0.2"]).declare()
    oracle = make_oracle(kind, "val_accuracy", "max", Budget(4, 2, 3, max_failures=3), 7, declared)
    oracle._set_project_dir(str(tmp_path), "oracle")
    seen = []
    for score in (0.5, 0.7, 0.6, 0.8):
        trial = oracle.create_trial("tuner0")
        values = trial.hyperparameters.values
        assert values["model.dropout"] == 0.2 and values["train.batch_size"] in (64, 128, 256)
        assert 3e-4 <= values["train.learning_rate"] <= 5e-3
        seen.append(values)
        oracle.update_trial(trial.trial_id, {"val_accuracy": score})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    assert oracle.create_trial("tuner0").status == "STOPPED"
    assert oracle.get_best_trials(1)[0].score == 0.8 and len({json.dumps(v, sort_keys=True) for v in seen}) == 4


def test_no_tuning_module_imports_one_that_imports_it_back():
    """Every import statement (inside functions too) under tuning/ and common/: no two modules import each
    other where tuning is one of them, and common/ imports nothing from tuning/."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    modules = {".".join(["deepsuite", *p.relative_to(root).with_suffix("").parts]).removesuffix(".__init__"): p
               for folder in ("common", "tuning") for p in (root / folder).rglob("*.py")}

    def imported(path):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                yield from (alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:   # the suite uses absolute imports only
                assert node.level == 0, f"{path}: relative import"
                yield from (f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                            for a in node.names)

    graph = {name: {target for target in imported(path) if target in modules and target != name}
             for name, path in modules.items()}
    mutual = sorted({tuple(sorted((a, b))) for a, targets in graph.items() for b in targets if a in graph[b]})
    assert [pair for pair in mutual if any(m.startswith("deepsuite.tuning") for m in pair)] == []
    assert [(a, b) for a, targets in graph.items() if a.startswith("deepsuite.common")
            for b in targets if b.startswith("deepsuite.tuning")] == []
