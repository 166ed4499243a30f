"""Mixed precision on every pipeline's `full` (GPU) preset: it is set, and the built model really computes in it.

A GPU preset must not silently train in float32. Under mixed precision Keras wants the weights in float32,
the layers computing in float16 (GPU) or bfloat16 (CPU, `common.backend.precision_policy`), and the
outputs and the loss in float32; each model is built from its `full` preset on a few rows of data and run
on one batch under both policies, as the runner and the tuner set them (`train.mixed_precision` ->
precision_policy(..., device) -> the global dtype policy -> build_model).
"""
from __future__ import annotations

from importlib.metadata import entry_points

import keras
import numpy as np
import pytest
from keras import tree

from deepsuite.app import registry
from deepsuite.common import backend
from deepsuite.common.config import resolve
from tests.support.data import PNEUMONIA, TINY_SHAKESPEARE, needs_fashion_mnist, needs_pneumonia, needs_tiny_shakespeare

REVIEWS = [("a gripping, funny and tender film", 1), ("dull, slow and far too long", 0),
           ("the best thing I have seen this year", 1), ("I walked out bored after an hour", 0),
           ("sharp writing and a wonderful cast", 1), ("a lazy script with nothing to say", 0),
           ("moving, beautifully shot, never sentimental", 1), ("loud, empty and instantly forgettable", 0)]

# the full preset's model and training recipe on a few rows: only the data limits are overridden
DATA = {
    "image-classification": (["data.max_train_samples=200", "data.max_test_samples=50"], [needs_fashion_mnist]),
    "image-denoising": (["data.max_train_images=2", "data.max_test_images=1", "data.patches_per_epoch=8",
                         "data.val_patches=4"], []),
    "medical-imaging": ([f"data.source=medmnist:{PNEUMONIA}", "data.max_train_samples=100",
                         "data.max_val_samples=20", "data.max_test_samples=20"], [needs_pneumonia]),
    "recommendation": (["data.source=csv:{tmp}/ratings.csv"], []),
    "recommendation/two_tower": (["data.source=csv:{tmp}/ratings.csv", "model.kind=two_tower"], []),
    "sentiment-analysis": (["data.source=csv:{tmp}/reviews.csv"], []),
    "text-generation": ([f"data.source=text:{TINY_SHAKESPEARE}", "data.max_chars=20000"], [needs_tiny_shakespeare]),
    # a GAN: two networks and two optimizers, checked by its own test below
    "image-generation": (["data.max_train_samples=64", "data.max_val_samples=16", "data.max_test_samples=16",
                          "evaluation.feature_train_samples=200", "evaluation.feature_epochs=1"], [needs_fashion_mnist]),
}
ADVERSARIAL = {"image-generation"}
LOW = {"cpu": "bfloat16", "gpu x1": "float16"}


def test_every_pipeline_of_the_suite_is_checked_and_its_full_preset_mixes():
    suite = {entry.name for entry in entry_points(group=registry.GROUP) if entry.value.startswith("deepsuite.")}
    assert suite == {name.split("/")[0] for name in DATA}, "add the new pipeline to DATA"
    for name in sorted(suite):
        pipeline = registry.get(name)
        config = resolve(pipeline.config_cls, pipeline.presets, "full", None, [])
        assert config.train.mixed_precision is True, f"{name}: the full (GPU) preset trains in float32"
        assert backend.precision_policy(config.train.mixed_precision, "gpu x1") == "mixed_float16"
        assert backend.precision_policy(config.train.mixed_precision, "cpu") == "mixed_bfloat16"


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """name -> (pipeline, config, splits), each loaded once for both policies."""
    folder = tmp_path_factory.mktemp("mixed-precision")
    (folder / "reviews.csv").write_text("text,label\n" + "".join(f'"{text}",{label}\n' for text, label in REVIEWS * 4),
                                        encoding="utf-8")
    rng = np.random.default_rng(0)
    rows = [f"{user},{item},{rng.integers(1, 6)}\n" for user in range(1, 31) for item in range(1, 41)
            if rng.random() < 0.3]
    (folder / "ratings.csv").write_text("user,item,rating\n" + "".join(rows), encoding="utf-8")
    cache = {}

    def load(name):
        if name not in cache:
            pipeline = registry.get(name.split("/")[0])
            overrides = [value.format(tmp=folder) for value in DATA[name][0]]
            config = resolve(pipeline.config_cls, pipeline.presets, "full", None, overrides)
            cache[name] = pipeline, config, pipeline.load_data(config)
        return cache[name]
    return load


@pytest.fixture
def global_policy():
    """The test sets Keras's process-wide dtype policy, as the runner does; put back what was there."""
    before = keras.mixed_precision.global_policy()
    yield
    keras.mixed_precision.set_global_policy(before)


def leaf_layers(layer):
    """Layers holding their own weights (not wrappers of others), each once."""
    children = list(layer._flatten_layers(include_self=False, recursive=False))
    if not children:
        return [layer]
    found = {}
    for child in children:
        found.update({id(leaf): leaf for leaf in leaf_layers(child)})
    return list(found.values())


def one_batch(fit, size=8):
    """A few rows of what `fit()` receives: arrays / dicts of arrays, or the first batch of a PyDataset."""
    x, y = fit.x, fit.y
    if isinstance(x, keras.utils.PyDataset):
        x, y = x[0][:2]
    elif hasattr(x, "as_numpy_iterator"):  # a tf.data.Dataset
        x, y = next(x.as_numpy_iterator())[:2]
    return tree.map_structure(lambda a: a[:size], x), (None if y is None else tree.map_structure(lambda a: a[:size], y))


@pytest.mark.parametrize("device", list(LOW))
@pytest.mark.parametrize("name", [pytest.param(name, marks=marks) for name, (_, marks) in DATA.items()
                                  if name not in ADVERSARIAL])
def test_full_preset_model_computes_in_half_precision_with_float32_weights_outputs_and_loss(
        name, device, loaded, global_policy):
    pipeline, config, splits = loaded(name)
    keras.mixed_precision.set_global_policy(backend.precision_policy(config.train.mixed_precision, device))
    model = pipeline.build_model(config, splits)
    low = LOW[device]
    assert model.dtype_policy.compute_dtype == low and model.dtype_policy.variable_dtype == "float32"

    weights = {low: 0, "float32": 0}
    for layer in leaf_layers(model):
        count = sum(int(np.prod(w.shape)) for w in layer.trainable_weights)
        if count:
            weights[layer.dtype_policy.compute_dtype] += count
    share = weights[low] / sum(weights.values())
    # the float32 exceptions are the output heads (e.g. a 10-way softmax): a few thousand weights of millions
    assert share > 0.95, f"{name}: only {share:.1%} of the trainable weights compute in {low} ({weights})"
    assert {w.dtype for w in model.weights if "float" in str(w.dtype)} == {"float32"}  # master weights
    assert all(output.dtype == "float32" for output in model.outputs), [o.dtype for o in model.outputs]
    if device == "gpu x1":  # float16 needs loss scaling; Keras wraps the optimizer itself
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)

    x, y = one_batch(pipeline.fit_data(splits, config))
    predicted = model(x, training=True)
    assert all(keras.backend.standardize_dtype(p.dtype) == "float32" for p in tree.flatten(predicted))
    # two_tower has no targets: its in-batch softmax loss is the layer's own (add_loss)
    loss = model.compute_loss(x, y, predicted) if y is not None else keras.ops.sum(model.losses)
    assert keras.backend.standardize_dtype(loss.dtype) == "float32" and np.isfinite(float(loss)), (name, device, loss)


@needs_fashion_mnist
@pytest.mark.parametrize("device", list(LOW))
def test_full_preset_gan_computes_in_half_precision_and_trains_a_finite_step(device, loaded, global_policy):
    """The GAN's generator and discriminator compute in half precision with float32 weights, its samples are
    float32, both optimizers scale the loss under float16, and one training step on real images is finite."""
    pipeline, config, splits = loaded("image-generation")
    keras.mixed_precision.set_global_policy(backend.precision_policy(config.train.mixed_precision, device))
    model = pipeline.build_model(config, splits)
    low = LOW[device]
    for network in (model.generator, model.discriminator):
        counted = {low: 0, "float32": 0}
        for layer in leaf_layers(network):
            counted[layer.dtype_policy.compute_dtype] = counted.get(layer.dtype_policy.compute_dtype, 0) + sum(
                int(np.prod(w.shape)) for w in layer.trainable_weights)
        assert counted[low] / sum(counted.values()) > 0.9, (network.name, counted)
    assert {w.dtype for w in model.weights if "float" in str(w.dtype)} == {"float32"}
    samples = model(keras.random.normal((4, model.latent_dim), seed=1))
    assert keras.backend.standardize_dtype(samples.dtype) == "float32"
    if device == "gpu x1":
        assert isinstance(model.optimizer.discriminator, keras.optimizers.LossScaleOptimizer)
        assert isinstance(model.optimizer.generator, keras.optimizers.LossScaleOptimizer)
    fit = pipeline.fit_data(splits, config)
    logs = model.train_on_batch(np.asarray(fit.x[:8]), np.asarray(fit.y[:8]), return_dict=True)
    assert all(np.isfinite(float(logs[key])) for key in ("d_loss", "g_loss")), logs


@pytest.mark.parametrize("cpuinfo, expected", [
    ("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n", "native"),
    ("processor\t: 0\nflags\t\t: fpu sse2 avx2 amx_tile amx_bf16\n", "native"),
    ("processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n", "native"),
    ("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\nflags\t\t: fpu sse2 avx2 fma\n", "emulated"),
    ("", "unknown"),
])
def test_cpu_bfloat16_is_read_from_the_cpu_flags(cpuinfo, expected):
    """A bfloat16 run on a CPU without bfloat16 instructions is told so (the runner echoes a note)."""
    assert backend.cpu_bfloat16(cpuinfo) == expected


def test_a_bfloat16_run_records_whether_the_cpu_has_bfloat16():
    """The tag lands only on runs that compute in bfloat16; a float32 run carries none."""
    try:
        tags = backend.configure(seed=1, deterministic=False, mixed_precision=True)
        if tags["device"] == "cpu":
            assert tags["precision_policy"] == "mixed_bfloat16"
            assert tags["cpu_bfloat16"] in {"native", "emulated", "unknown"}
        assert "cpu_bfloat16" not in backend.configure(seed=1, deterministic=False, mixed_precision=False)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_only_an_emulated_bfloat16_run_gets_a_note():
    """The note names the switch back to float32; native bfloat16 and float32 runs print nothing."""
    assert "train.mixed_precision=false" in backend.precision_note({"cpu_bfloat16": "emulated"})
    assert backend.precision_note({"cpu_bfloat16": "native"}) is None
    assert backend.precision_note({"precision_policy": "float32"}) is None
