"""Hostile input: the config layer and the image loaders never crash with a traceback.

Property-based (hypothesis): whatever keys, types, nesting or YAML oddities arrive, resolution either
returns a fully validated config or raises ConfigError with a message.
"""
from __future__ import annotations

import ast
import re
import string

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from deepsuite.common.config import ConfigError, resolve
from deepsuite.common.data.images import MAX_PIXELS, load_class_folders, read_image
from deepsuite.common.errors import DataError
from deepsuite.pipelines.image_classification.config import PRESETS, ImageClassificationConfig

KNOWN = ["seed", "preset", "deterministic", "train", "model", "data", "tracking", "train.epochs", "train.batch_size",
         "train.optimizer", "model.dropout", "model.widths", "model.blocks_per_stage", "data.source",
         "data.image_size", "data.val_fraction", "tracking.run_name"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                    st.text(max_size=20))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)
keys = st.one_of(st.sampled_from(KNOWN), st.text(alphabet=string.ascii_letters + "._-", min_size=1, max_size=25))
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(config) -> None:
    """A returned config must satisfy the model's own validation (no unvalidated value slips through)."""
    again = ImageClassificationConfig.model_validate(config.model_dump())
    assert again == config
    assert config.train.epochs >= 1 and 0 <= config.model.dropout < 1


# Every ConfigError the resolver raises is one of its own formatted messages, never a bare exception text.
MESSAGE_FORMS = ("invalid config: ", "bad --set ", "--set ", "unknown preset ")


POINTED_KEY = (re.compile(r"^invalid config: unknown key ('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")"),  # repr
               re.compile(r"^invalid config: ([^ :']+): "),  # model.dropout: Input should be ...
               re.compile(r"^--set ([^ :']+): "),            # --set seed.x: 'seed' is a value ...
               re.compile(r"^unknown (preset) "))            # unknown preset 'fast' (valid: ...)


def names_one_of(message: str, keys) -> bool:
    """The message points at the user's input: the key path it names, where its form names one, starts with one
    of the top-level keys given (a key merely occurring somewhere in the text does not count); a malformed
    assignment is quoted whole, so one of the keys must be inside the quote."""
    keys = [str(key) for key in keys]
    for pattern in POINTED_KEY:
        if found := pattern.match(message):
            named = found.group(1)
            if named[:1] in "'\"":
                named = ast.literal_eval(named)  # shown as repr: control characters arrive escaped
            return any(named == key or named.split(".")[0] == key.split(".")[0] for key in keys)
    quoted = re.match(r"^bad --set ('.*'|\".*\"): expected dotted.key=value", message)
    return bool(quoted) and any(key in ast.literal_eval(quoted.group(1)) for key in keys)


@SETTINGS
@given(st.lists(st.tuples(keys, values), max_size=5))
def test_random_set_overrides(pairs):
    overrides = [f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"
                 for key, value in pairs]
    try:
        check(resolve(ImageClassificationConfig, PRESETS, None, None, overrides))
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith(MESSAGE_FORMS), message
        # a key such as ".x" or "a..b" is malformed as a whole: the message quotes the assignment, key included
        assert names_one_of(message, [key.split(".")[0] or key for key, _ in pairs]), (pairs, message)


@SETTINGS
@given(st.text(max_size=40))
def test_random_set_strings(raw):
    try:
        check(resolve(ImageClassificationConfig, PRESETS, None, None, [raw]))
    except ConfigError as exc:
        message = str(exc)
        key, sep, _ = raw.partition("=")
        parts = key.strip().split(".")
        if not sep or not key.strip() or not all(parts):  # not dotted.key=value: the line quotes it and shows the form
            assert message == f"bad --set {raw!r}: expected dotted.key=value, e.g. --set train.epochs=5"
        else:                                           # well formed: the message names the key that is wrong
            assert message.startswith(MESSAGE_FORMS) and names_one_of(message, [parts[0]]), (raw, message)


@SETTINGS
@given(st.one_of(st.dictionaries(keys, values, max_size=6), values))
def test_random_yaml_documents(tmp_path_factory, document):
    path = tmp_path_factory.mktemp("yaml") / "config.yaml"
    path.write_text(yaml.safe_dump(document))
    try:
        check(resolve(ImageClassificationConfig, PRESETS, None, path, []))
    except ConfigError as exc:
        message = str(exc)
        if isinstance(document, dict):  # a mapping: the message names one of its keys
            assert message.startswith(MESSAGE_FORMS) and names_one_of(message, document), (document, message)
        else:                           # a list or scalar document: the file is named and the top level explained
            assert message == f"{path}: expected a mapping of config keys at the top, got {type(document).__name__}"


@pytest.mark.parametrize("text, expected", [
    # unsafe tags are refused, not executed
    ("!!python/object/apply:os.system ['echo hacked']",
     "{path}: line 1 is not valid YAML: could not determine a constructor for the tag"),
    # anchors into the wrong section
    ("train: &a {epochs: 3}\nmodel: *a", "invalid config: unknown key 'model.epochs' = 3"),
    # not a float to PyYAML (no dot): a string, refused as an integer
    ("train:\n  epochs: 1e400", "invalid config: train.epochs: Input should be a valid integer"),
    ("\xff\xfe binary", "{path}: expected a mapping of config keys at the top, got str"),  # valid UTF-8 ("ÿþ")
    (b"train:\n  epochs: \xff\xfe3\n", "{path}: not a UTF-8 text file (invalid start byte)"),  # real binary
    ("tracking:\n  run_name: caf\xe9\n".encode("latin-1"),                               # Latin-1 text
     "{path}: not a UTF-8 text file (invalid continuation byte)"),
    ("--- \n--- \n", "{path}: line 2 is not valid YAML: but found another document"),  # several documents
    ("train: {epochs: .nan}", "invalid config: train.epochs: Input should be a finite number (got nan)"),
    ("? [complex, key]\n: 1", "{path}: line 1 is not valid YAML: found unhashable key"),
])
def test_yaml_oddities(tmp_path, text, expected):
    path = tmp_path / "odd.yaml"
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    with pytest.raises(ConfigError) as error:
        resolve(ImageClassificationConfig, PRESETS, None, path, [])
    assert str(error.value).startswith(expected.format(path=path)), str(error.value)


def test_image_loader_faces_bad_files(tmp_path):
    truncated = tmp_path / "truncated.png"
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:40])
    with pytest.raises(DataError, match="truncated.png"):
        read_image(truncated)
    wrong = tmp_path / "really-a-text.jpg"
    wrong.write_text("hello")
    with pytest.raises(DataError, match="not an image file"):
        read_image(wrong)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty.png"):
        read_image(empty)


def test_huge_image_is_refused_by_size_not_memory(tmp_path):
    side = int(MAX_PIXELS ** 0.5) + 1
    huge = tmp_path / "huge.png"
    Image.new("1", (side, side)).save(huge)  # 1-bit: small on disk, 256 Mpixel when decoded
    with pytest.raises(DataError, match="too large"):
        read_image(huge)


def test_sixteen_bit_png_is_rescaled(tmp_path):
    deep = tmp_path / "deep.png"
    Image.fromarray(np.full((8, 8), 65535, np.uint16)).save(deep)
    assert read_image(deep, channels=1).max() == 255


def test_unicode_paths_work(tmp_path):
    root = tmp_path / "données" / "imágenes"
    for label in ("chat 猫", "chien"):
        (root / label).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((10, 10, 3), 30 * i, np.uint8)).save(root / label / f"é{i}.png")
    x, y, names = load_class_folders(root, (8, 8), 3)
    assert x.shape == (4, 8, 8, 3) and names == ["chat 猫", "chien"] and list(y) == [0, 0, 1, 1]


def test_twelve_bit_data_in_a_sixteen_bit_png_keeps_its_grey_levels(tmp_path):
    ramp = tmp_path / "xray12.png"
    Image.fromarray(np.tile(np.arange(4096, dtype=np.uint16), (4, 1))).save(ramp)  # 12-bit values, 16-bit PNG
    grey = read_image(ramp, channels=1)
    assert grey.max() == 255 and len(np.unique(grey)) == 256  # was 16 levels when divided by 65535


def test_transparent_pixels_are_composited_on_black_not_unveiled(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 0)        # fully transparent red: hidden, so black
    rgba[0, 1] = (255, 255, 255, 255)  # opaque white
    rgba[1, 0] = (255, 255, 255, 128)  # half-transparent white: mid grey
    path = tmp_path / "icon.png"
    Image.fromarray(rgba, "RGBA").save(path)
    rgb = read_image(path, channels=3)
    assert rgb[0, 0].tolist() == [0, 0, 0] and rgb[0, 1].tolist() == [255, 255, 255]
    assert 120 <= rgb[1, 0, 0] <= 136
