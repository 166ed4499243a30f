"""Data-parallel training (issue 25, point 2): `train.devices` on JAX (keras.distribution.DataParallel), on
TensorFlow (tf.distribute.MirroredStrategy), and a JAX job of two processes on loopback.

Several devices on one CPU are simulated: `XLA_FLAGS=--xla_force_host_platform_device_count=4` for JAX,
logical CPU devices (`tf.config.set_logical_device_configuration`) for TensorFlow. Every run goes through
the real CLI into a real sqlite MLflow store.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from deepsuite.common.config import resolve
from deepsuite.common.distribution import ArrayBatches, DeviceBatches
from deepsuite.common.errors import ConfigError
from deepsuite.pipelines.image_classification.config import PRESETS, ImageClassificationConfig
from tests.support.cli import REPO, SHARED_DATA, run_cli
from tests.support.data import PNEUMONIA, needs_fashion_mnist, needs_pneumonia, needs_tiny_shakespeare
from tests.support.store import client_for, only_run

# Simulated devices are threads of one process: on a busy CI machine one may reach a collective over 40 s after
# the others, where XLA:CPU aborts by default; these runs wait instead.
PATIENT = ("--xla_cpu_collective_call_terminate_timeout_seconds=900 "
           "--xla_cpu_collective_call_warn_stuck_timeout_seconds=300")
FOUR_CPUS = {"XLA_FLAGS": f"--xla_force_host_platform_device_count=4 {PATIENT}"}
IC = ["run", "image-classification", "--preset", "smoke",
      "--set", "train.mixed_precision=false"]  # float32: see the tolerance below
TG = ["run", "text-generation", "--preset", "smoke", "--set", f"data.source=text:{SHARED_DATA / 'tinyshakespeare.txt'}"]


def last(folder, experiment: str, key: str) -> float:
    client, run = only_run(folder, experiment)
    return client.get_metric_history(run.info.run_id, key)[-1].value


def jax_run(args: list[str], folder, devices: int):
    """A JAX run without TensorFlow on a host that shows 4 CPU devices, training on `devices` of them."""
    folder.mkdir(parents=True, exist_ok=True)
    result = run_cli([*args, "--set", f"train.devices={devices}"], cwd=folder, env=FOUR_CPUS, backend="jax",
                     hide_tensorflow=True)
    assert result.code == 0, result.err[-3000:]
    return result


def assert_four_devices(folder, experiment: str, per_device: int) -> None:
    _, run = only_run(folder, experiment)
    tags = run.data.tags
    assert run.info.status == "FINISHED" and tags["backend"] == "jax"
    assert tags["distribution"] == "keras.distribution.DataParallel" and tags["distribution.mesh"] == "batch=4"
    assert tags["distribution.devices"] == "4" and tags["distribution.device_list"] == "cpu:0, cpu:1, cpu:2, cpu:3"
    assert int(tags["distribution.global_batch"]) == 4 * per_device
    assert tags["distribution.per_device_batch"] == str(per_device)


# ----------------------------------------------------------------------------------------------
# The batch rule and the config (no training)


def test_short_batches_are_filled_to_a_multiple_of_the_devices_and_shared_by_process():
    x, y = np.arange(10).reshape(10, 1), np.arange(10) * 10
    source = ArrayBatches((x, y), 4)              # batches of 4, 4, 2 rows
    one = DeviceBatches(source, devices=4)
    assert [len(one[i][0]) for i in range(len(one))] == [4, 4, 4]
    assert one[2][0].ravel().tolist() == [8, 9, 8, 9] and one[2][1].tolist() == [80, 90, 80, 90]
    assert one[0][0].ravel().tolist() == [0, 1, 2, 3]  # a full batch passes unchanged
    # two processes with 2 devices each: each feeds its contiguous half of the (filled) global batch
    halves = [DeviceBatches(source, devices=4, processes=2, index=i) for i in (0, 1)]
    assert [h[1][0].ravel().tolist() for h in halves] == [[4, 5], [6, 7]]
    assert [h[2][0].ravel().tolist() for h in halves] == [[8, 9], [8, 9]]


def test_devices_must_be_auto_or_a_positive_count():
    assert resolve(ImageClassificationConfig, PRESETS, "smoke").train.devices == "auto"
    assert resolve(ImageClassificationConfig, PRESETS, "smoke", overrides=["train.devices=2"]).train.devices == 2
    for bad in ("0", "all", "1.5"):
        with pytest.raises(ConfigError, match="train.devices"):
            resolve(ImageClassificationConfig, PRESETS, "smoke", overrides=[f"train.devices={bad}"])


def test_a_global_batch_that_does_not_divide_by_the_devices_is_refused_before_training(tmp_path):
    result = run_cli([*IC, "--set", "train.batch_size=30"], cwd=tmp_path, env=FOUR_CPUS, backend="jax",
                     hide_tensorflow=True)
    assert result.code != 0 and "Traceback" not in result.err
    message = result.err.strip().splitlines()[-1]
    assert "train.batch_size=30" in message and "4 devices" in message and "28 or 32" in message
    too_many = run_cli([*IC, "--set", "train.devices=8"], cwd=tmp_path, env=FOUR_CPUS, backend="jax",
                       hide_tensorflow=True)
    assert "train.devices=8 but only 4 cpu device(s) are visible" in too_many.err


# ----------------------------------------------------------------------------------------------
# 4 simulated JAX devices against 1, the same global batch
#
# Tolerance, and why: the 4-device run is the 1-device run's computation split four ways. The weights start
# the same (same seed), the batches are the same (the global batch is train.batch_size either way) and JAX's
# partitionable threefry draws the same dropout/augmentation numbers whatever the sharding; only float32
# summation order differs (per-device gradient sums all-reduced, BatchNorm statistics averaged over the
# mesh). Measured here (jax 0.10.2, CPU): the same val_accuracy (0.71667) and val_loss 1.0885998 vs
# 1.0885999 for image classification, the same val_loss (3.1762748) for text generation. The bounds, one
# validation image and 0.1% of the loss, leave room for other CPUs' and XLA versions' reduction orders
# (~1e-7 per step, amplified over the 34 and 30 steps) while a changed computation (a lost or doubled
# shard, a per-device instead of global mean, another learning rate) moves these metrics by far more.
# Both runs compute in float32: in bfloat16 (image classification's default) the sharded sums round differently
# and the two runs' val_loss drift apart by ~0.2% over the smoke run, past a bound that must stay this tight.


@needs_fashion_mnist
def test_image_classification_trains_on_four_jax_devices_like_on_one(tmp_path):
    jax_run(IC, tmp_path / "four", devices=4)
    jax_run(IC, tmp_path / "one", devices=1)
    assert_four_devices(tmp_path / "four", "image-classification", per_device=16)
    _, single = only_run(tmp_path / "one", "image-classification")
    assert single.data.tags["distribution"] == "none" and single.data.tags["distribution.devices"] == "1"
    four_acc, one_acc = (last(tmp_path / f, "image-classification", "val_accuracy") for f in ("four", "one"))
    four_loss, one_loss = (last(tmp_path / f, "image-classification", "val_loss") for f in ("four", "one"))
    print(f"val_accuracy 4 devices {four_acc:.4f}, 1 device {one_acc:.4f}; "
          f"val_loss {four_loss:.4f} vs {one_loss:.4f}")
    assert abs(four_acc - one_acc) <= 1 / 120 + 1e-6  # 120 validation images
    assert four_loss == pytest.approx(one_loss, rel=1e-3)


@needs_tiny_shakespeare
def test_text_generation_trains_on_four_jax_devices_like_on_one(tmp_path):
    jax_run(TG, tmp_path / "four", devices=4)
    jax_run(TG, tmp_path / "one", devices=1)
    assert_four_devices(tmp_path / "four", "text-generation", per_device=4)
    four, one = (last(tmp_path / f, "text-generation", "val_loss") for f in ("four", "one"))
    print(f"val_loss 4 devices {four:.4f}, 1 device {one:.4f}")
    assert four == pytest.approx(one, rel=1e-3)


@needs_tiny_shakespeare
def test_a_search_trains_its_trials_on_the_devices_of_train_devices(tmp_path):
    # the first trial is the recipe (smoke batch 16: 4 per device); a trial outside the scope would train on
    # one device and the 4-device model built inside it would not match its inputs' layout
    result = run_cli(["tune", "text-generation", "--preset", "smoke", "--set",
                      f"data.source=text:{SHARED_DATA / 'tinyshakespeare.txt'}", "--tuner", "random",
                      "--max-trials", "1", "--max-epochs", "1"], cwd=tmp_path, env=FOUR_CPUS, backend="jax",
                     hide_tensorflow=True)
    assert result.code == 0, result.err[-3000:]
    client = client_for(tmp_path)
    runs = client.search_runs([client.get_experiment_by_name("text-generation").experiment_id])
    [parent] = [r for r in runs if r.data.tags.get("deepsuite.kind") == "search"]
    [trial] = [r for r in runs if r.data.tags.get("deepsuite.kind") == "trial"]
    assert parent.data.tags["distribution"] == "keras.distribution.DataParallel"
    assert parent.data.tags["distribution.devices"] == "4"
    assert trial.info.status == "FINISHED" and trial.data.tags["deepsuite.trial_status"] == "completed"


JIT_CHECK = textwrap.dedent("""
    import sys
    from deepsuite.app import registry
    from deepsuite.common.config import resolve

    for name, overrides in (("image-classification", ["data.max_train_samples=200", "data.max_test_samples=50"]),
                            ("medical-imaging", [f"data.source=medmnist:{sys.argv[1]}", "data.max_train_samples=100",
                                                 "data.max_val_samples=20", "data.max_test_samples=20"])):
        pipeline = registry.get(name)
        config = resolve(pipeline.config_cls, pipeline.presets, "default", None, overrides)
        model = pipeline.build_model(config, pipeline.load_data(config))
        augmenting = sorted(layer.__class__.__name__ for layer in model._flatten_layers()
                            if layer.__class__.__name__.startswith("Random"))
        print(name, model.jit_compile, ",".join(augmenting))
""")


@needs_fashion_mnist
@needs_pneumonia
def test_the_image_models_compile_with_xla_on_jax_augmentation_included():
    # Keras marks RandomTranslation/Rotation/Zoom not jit-compatible on every backend, which made the whole
    # model run op by op on JAX (no XLA on a GPU; a multi-process run refused); on JAX they compile
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", JIT_CHECK, str(PNEUMONIA)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in proc.stdout.strip().splitlines())
    assert lines["image-classification"].startswith("True ") and "RandomTranslation" in lines["image-classification"]
    assert lines["medical-imaging"].startswith("True ") and "RandomZoom" in lines["medical-imaging"]


# ----------------------------------------------------------------------------------------------
# TensorFlow: MirroredStrategy over 2 logical CPU devices

TF_TWO_CPUS = textwrap.dedent("""
    import sys
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from deepsuite.app.cli import main

    sys.exit(main(sys.argv[1:]))
""")


def tf_run(folder, devices: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", TF_TWO_CPUS, *IC, "--set", f"train.devices={devices}"], cwd=folder,
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]


@needs_fashion_mnist
def test_tensorflow_mirrored_strategy_on_two_logical_cpus(tmp_path):
    tf_run(tmp_path / "two", devices=2)
    tf_run(tmp_path / "one", devices=1)
    _, run = only_run(tmp_path / "two", "image-classification")
    tags = run.data.tags
    assert run.info.status == "FINISHED" and tags["backend"] == "tensorflow"
    assert tags["distribution"] == "tf.distribute.MirroredStrategy" and tags["distribution.devices"] == "2"
    assert tags["distribution.per_device_batch"] == "32" and tags["distribution.global_batch"] == "64"
    assert only_run(tmp_path / "one", "image-classification")[1].data.tags["distribution"] == "none"
    two, one = (last(tmp_path / f, "image-classification", "val_accuracy") for f in ("two", "one"))
    print(f"TensorFlow val_accuracy 2 devices {two:.4f}, 1 device {one:.4f}")
    # Not the same computation as on one device: Keras's BatchNormalization takes its batch statistics per
    # replica (32 images, not 64) and each replica draws its own dropout and augmentation, so the 2-device
    # run is another valid trajectory, not a reordering. Measured: 0.7083 vs 0.6833 (3 of 120 images). The
    # bound, 12 images, is what two such trajectories may differ by after 34 steps; a run that did not
    # learn on the mirrored model sits near chance (0.1) against ~0.7.
    assert abs(two - one) <= 12 / 120 + 1e-6 and two > 0.5


# ----------------------------------------------------------------------------------------------
# Two JAX processes on loopback


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@needs_fashion_mnist
@pytest.mark.slow
def test_two_jax_processes_train_one_run_together(tmp_path):
    """Each process shows 2 CPU devices: the job's mesh is 4 devices over 2 processes (gloo collectives).

    With the smoke preset's augmentation: a multi-process job needs an XLA-compiled model
    (distribution.require_compiled), which Keras's RandomTranslation prevented until training.jit_on_jax."""
    port = free_port()
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO),
           "XLA_FLAGS": f"--xla_force_host_platform_device_count=2 {PATIENT}"}
    procs = [subprocess.Popen([sys.executable, "-m", "tests.support.without_tensorflow", *IC,
                               "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i)],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in (0, 1)]
    outputs = [p.communicate(timeout=1200) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-3000:]
    assert "process 1 of 2: training with process 0" in outputs[1][0]
    assert "done: image-classification run" in outputs[0][0]
    _, run = only_run(tmp_path, "image-classification")  # exactly one run in the store
    tags = run.data.tags
    assert run.info.status == "FINISHED" and tags["distribution.processes"] == "2"
    assert tags["distribution.devices"] == "4" and tags["distribution.per_device_batch"] == "16"
    assert run.data.metrics["test_accuracy"] > 0.5  # 0.76 here; the smoke preset reaches ~0.7 on one process
    assert len(client_for(tmp_path).search_logged_models([run.info.experiment_id])) == 1
