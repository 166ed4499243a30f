"""The config layers: defaults -> preset -> YAML -> --set, and the errors users see."""
import pytest

from deepsuite.common.config import flatten, parse_set, resolve
from deepsuite.common.errors import ConfigError
from deepsuite.pipelines.image_classification.config import PRESETS, ImageClassificationConfig


def build(preset=None, config_file=None, overrides=()):
    return resolve(ImageClassificationConfig, PRESETS, preset, config_file, list(overrides))


def test_layers_apply_in_order(tmp_path):
    path = tmp_path / "my.yaml"
    path.write_text("train:\n  epochs: 7\n  batch_size: 32\nmodel:\n  dropout: 0.1\n")
    config = build("smoke", path, ["train.epochs=2", "model.dropout=0.3"])
    assert config.preset == "smoke"
    assert config.train.epochs == 2            # --set beats the file
    assert config.train.batch_size == 32       # the file beats the preset (64)
    assert config.model.dropout == 0.3
    assert config.model.widths == [8, 16]      # from the smoke preset
    assert config.data.source == "fashion_mnist"  # default


def test_preset_can_come_from_the_yaml_file(tmp_path):
    path = tmp_path / "my.yaml"
    path.write_text("preset: smoke\n")
    assert build(config_file=path).train.epochs == PRESETS["smoke"]["train"]["epochs"]


def test_unknown_key_names_key_and_close_match():
    with pytest.raises(ConfigError) as err:
        build(overrides=["train.epoch=3"])
    message = str(err.value)
    assert "'train.epoch'" in message and "did you mean 'train.epochs'" in message and "train.batch_size" in message


def test_unknown_top_level_section():
    with pytest.raises(ConfigError, match="did you mean 'train'"):
        build(overrides=["trian.epochs=3"])


def test_bad_value_names_key_value_and_allowed():
    with pytest.raises(ConfigError) as err:
        build(overrides=["train.optimizer=adagrad"])
    message = str(err.value)
    assert "train.optimizer" in message and "'adagrad'" in message and "'adamw'" in message


def test_out_of_range_value():
    with pytest.raises(ConfigError, match=r"model.dropout.*less than 1.*got 1.5"):
        build(overrides=["model.dropout=1.5"])


def test_unknown_preset_lists_presets():
    with pytest.raises(ConfigError, match=r"unknown preset 'smok'; did you mean 'smoke'"):
        build("smok")


@pytest.mark.parametrize("bad", ["train.epochs", "=3", "train..epochs=3", ".x=1"])
def test_bad_set_syntax(bad):
    with pytest.raises(ConfigError, match="expected dotted.key=value"):
        parse_set(bad)


def test_set_into_a_value_is_an_error():
    with pytest.raises(ConfigError, match=r"seed: Input should be a valid integer \(got \{'x': 1\}\)"):
        build(overrides=["seed.x=1"])
    with pytest.raises(ConfigError, match="'train.epochs' is a value"):
        build(overrides=["train.epochs=3", "train.epochs.x=1"])


def test_yaml_with_typo_and_syntax_error(tmp_path):
    typo = tmp_path / "typo.yaml"
    typo.write_text("model:\n  droput: 0.2\n")
    with pytest.raises(ConfigError, match="did you mean 'model.dropout'"):
        build(config_file=typo)
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: line \d+ is not valid YAML"):
        build(config_file=broken)
    with pytest.raises(ConfigError, match="config file not found"):
        build(config_file=tmp_path / "missing.yaml")


def test_values_are_typed_from_yaml_scalars():
    config = build(overrides=["model.augment=false", "data.source=folder:/data/x", "data.image_size=[32, 32]"])
    assert config.model.augment is False
    assert config.data.source == "folder:/data/x"
    assert config.data.image_size == (32, 32)


def test_flatten_gives_dotted_params():
    flat = flatten(build("smoke").model_dump(mode="json"))
    assert flat["train.epochs"] == 2 and flat["model.widths"] == [8, 16] and "data.source" in flat


def test_partial_section_keeps_pipeline_defaults():
    """--set on one train key must not reset the pipeline's other train defaults to generic ones."""
    defaults = ImageClassificationConfig()
    config = build(overrides=["train.early_stopping_patience=0"])
    assert config.train.epochs == defaults.train.epochs and config.train.learning_rate == defaults.train.learning_rate
