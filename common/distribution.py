"""Data-parallel training on the engines that exist: `keras.distribution` on JAX, `tf.distribute` on TensorFlow.

`train.devices` ("auto": every visible device, or a count) picks the devices. With one device nothing changes:
no strategy, no distribution. With more, `train.batch_size` is the *global* batch, split evenly over them:

- JAX: `keras.distribution.DataParallel` over a one-axis `DeviceMesh` ("batch"), set around building and
  fitting the model (`scope`) and unset after. Weights are replicated, each batch is sharded. JAX needs every
  batch to divide by the device count, so `fit_feeds` fills a short last batch up to the next multiple by
  repeating its own rows (at most devices-1 rows seen twice per epoch and per validation pass).
- TensorFlow: `tf.distribute.MirroredStrategy` scope around building (and compiling) the model; Keras's
  fit() then runs under the model's strategy. tf.distribute splits uneven last batches itself.
- Several JAX processes (hosts): `initialize_processes` (coordinator address, process count and id from
  `deepsuite run` flags or Keras's KERAS_DISTRIBUTION_* variables) calls `keras.distribution.initialize`,
  i.e. `jax.distributed.initialize`; JAX's CPU collectives default to gloo. Each process feeds its own
  contiguous share of every global batch; only process 0 records the run and writes the export (runner.py).

TensorFlow is imported only when it is the backend; JAX only when it is.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Iterator

import keras
import numpy as np

from deepsuite.common.errors import ConfigError, DeepsuiteError

ENV_ADDRESSES = "KERAS_DISTRIBUTION_JOB_ADDRESSES"
ENV_PROCESSES = "KERAS_DISTRIBUTION_NUM_PROCESSES"
ENV_PROCESS_ID = "KERAS_DISTRIBUTION_PROCESS_ID"


@dataclass(frozen=True)
class Plan:
    """The devices one run trains on, and how its global batch is split over them."""

    backend: str
    devices: tuple            # jax.Device objects, or TensorFlow device names
    global_batch: int
    processes: int = 1
    process_index: int = 0

    @property
    def count(self) -> int:
        return len(self.devices)

    @property
    def parallel(self) -> bool:
        return self.count > 1

    @property
    def per_device_batch(self) -> int:
        return self.global_batch // self.count

    @property
    def engine(self) -> str:
        if not self.parallel:
            return "none"
        return "keras.distribution.DataParallel" if self.backend == "jax" else "tf.distribute.MirroredStrategy"

    def tags(self) -> dict[str, str]:
        """MLflow tags (tags, not params: a resumed run may see other devices)."""
        names = ", ".join(str(d) for d in self.devices)
        return {
            "distribution": self.engine,
            "distribution.devices": str(self.count),
            "distribution.mesh": f"batch={self.count}" if self.parallel else "none",
            "distribution.device_list": names if len(names) <= 500 else names[:497] + "...",
            "distribution.processes": str(self.processes),
            "distribution.global_batch": str(self.global_batch),
            "distribution.per_device_batch": str(self.per_device_batch),
        }

    def summary(self) -> str:
        if not self.parallel:
            return f"1 device, batch {self.global_batch}"
        where = f" in {self.processes} processes" if self.processes > 1 else ""
        return (f"{self.count} devices{where} ({self.engine}), global batch {self.global_batch} = "
                f"{self.count} x {self.per_device_batch}")


# ----------------------------------------------------------------------------------------------
# Processes (multi-host JAX)


def initialize_processes(coordinator: str | None = None, num_processes: int | None = None,
                         process_id: int | None = None) -> bool:
    """Join a multi-process JAX job when flags or KERAS_DISTRIBUTION_* ask for one; return whether it did.

    Must run before anything touches a JAX device (before `backend.configure`).
    """
    coordinator = coordinator or os.environ.get(ENV_ADDRESSES) or None
    num_processes = num_processes if num_processes is not None else _env_int(ENV_PROCESSES)
    process_id = process_id if process_id is not None else _env_int(ENV_PROCESS_ID)
    if coordinator is None and num_processes is None and process_id is None:
        return False
    backend = keras.backend.backend()
    if backend != "jax":
        raise ConfigError(f"several processes (--coordinator/--num-processes/--process-id or {ENV_ADDRESSES}...) "
                          f"need KERAS_BACKEND=jax, got {backend!r}")
    missing = [name for name, value in (("--coordinator", coordinator), ("--num-processes", num_processes),
                                        ("--process-id", process_id)) if value is None]
    if missing:
        raise ConfigError(f"a multi-process run needs the coordinator address, the process count and this "
                          f"process's id; missing {', '.join(missing)} (or {ENV_ADDRESSES}, {ENV_PROCESSES}, "
                          f"{ENV_PROCESS_ID})")
    if not 0 <= process_id < num_processes:
        raise ConfigError(f"--process-id must be in 0..{num_processes - 1} for --num-processes {num_processes}, "
                          f"got {process_id}")
    keras.distribution.initialize(coordinator, num_processes, process_id)
    return True


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def process_index() -> int:
    """This process's index in a multi-process JAX job; 0 otherwise (and on other backends)."""
    if keras.backend.backend() != "jax":
        return 0
    import jax

    return jax.process_index()


# ----------------------------------------------------------------------------------------------
# The plan


def plan(train) -> Plan:
    """Resolve `train.devices` against the visible devices; check the global batch divides by them."""
    backend = keras.backend.backend()
    visible, kind = _visible_devices(backend)
    processes, index = 1, 0
    if backend == "jax":
        import jax

        processes, index = jax.process_count(), jax.process_index()
    wanted = len(visible) if train.devices == "auto" else int(train.devices)
    if wanted > len(visible):
        raise ConfigError(f"train.devices={train.devices} but only {len(visible)} {kind} device(s) are visible "
                          f"({backend} backend); use train.devices=auto or at most {len(visible)}")
    if processes > 1 and wanted != len(visible):
        raise ConfigError(f"train.devices={train.devices}: a run in {processes} processes trains on all "
                          f"{len(visible)} devices of the job; use train.devices=auto")
    if wanted > 1 and backend not in ("jax", "tensorflow"):
        raise ConfigError(f"train.devices={train.devices}: data-parallel training runs on the jax and tensorflow "
                          f"backends, not {backend!r}; use train.devices=1")
    if train.batch_size % wanted:
        low = max(wanted, train.batch_size // wanted * wanted)
        raise ConfigError(f"train.batch_size={train.batch_size} is the global batch and must divide by the "
                          f"{wanted} devices of train.devices={train.devices}: use a multiple of {wanted} "
                          f"(e.g. {low} or {low + wanted}), or set train.devices")
    return Plan(backend, tuple(visible[:wanted]), train.batch_size, processes, index)


def _visible_devices(backend: str) -> tuple[list, str]:
    if backend == "jax":
        import jax

        devices = jax.devices()
        return devices, devices[0].platform
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_logical_devices("GPU")
        if gpus:
            return [d.name for d in gpus], "GPU"
        return [d.name for d in tf.config.list_logical_devices("CPU")], "CPU"
    return ["default"], "default"


@contextlib.contextmanager
def scope(plan: Plan) -> Iterator[None]:
    """Build (and compile) and fit the model inside this: the distribution or strategy of `plan`, undone after."""
    if not plan.parallel:
        yield
        return
    if plan.backend == "jax":
        previous = keras.distribution.distribution()
        mesh = keras.distribution.DeviceMesh((plan.count,), ["batch"], list(plan.devices))
        # fit_feeds already gives each process its own share of the batch: Keras must not shard it again
        keras.distribution.set_distribution(keras.distribution.DataParallel(device_mesh=mesh,
                                                                            auto_shard_dataset=False))
        try:
            yield
        finally:
            keras.distribution.set_distribution(previous)
        return
    import tensorflow as tf

    with tf.distribute.MirroredStrategy(devices=list(plan.devices)).scope():
        yield


# ----------------------------------------------------------------------------------------------
# Batches under a JAX distribution


def fit_feeds(x: Any, validation_data: Any, batch_size: int) -> tuple[Any, Any]:
    """fit()'s training feed and validation data, made to suit the active JAX distribution (if any).

    Under `keras.distribution.DataParallel` every batch must divide by the device count, and each
    process passes its own share of the global batch. A training PyDataset and validation data (arrays,
    batched by `batch_size`, or a PyDataset) become `DeviceBatches`; otherwise they pass through unchanged.
    """
    if keras.backend.backend() != "jax" or keras.distribution.distribution() is None:
        return x, validation_data
    import jax

    devices = int(np.prod(keras.distribution.distribution().device_mesh.shape))
    processes, index = jax.process_count(), jax.process_index()
    if devices == 1 and processes == 1:
        return x, validation_data
    if not isinstance(x, keras.utils.PyDataset):
        raise TypeError("fit_feeds needs the training batches as a keras.utils.PyDataset under a distribution")
    x = DeviceBatches(x, devices, processes, index)
    if validation_data is not None:
        if not isinstance(validation_data, keras.utils.PyDataset):
            validation_data = ArrayBatches(tuple(validation_data), batch_size)
        validation_data = DeviceBatches(validation_data, devices, processes, index)
    return x, validation_data


class ArrayBatches(keras.utils.PyDataset):
    """Arrays (or a tuple/dict structure of them) in order, `batch_size` rows at a time; the last batch short."""

    def __init__(self, arrays: Any, batch_size: int):
        super().__init__()
        self.arrays, self.batch_size = arrays, int(batch_size)
        self.size = len(keras.tree.flatten(arrays)[0])

    def __len__(self) -> int:
        return -(-self.size // self.batch_size)

    def __getitem__(self, index: int):
        rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return keras.tree.map_structure(lambda a: None if a is None else a[rows], self.arrays)


class DeviceBatches(keras.utils.PyDataset):
    """`source`'s batches for `devices` devices over `processes` processes, this one being `index`.

    A batch whose size does not divide by `devices` is filled up to the next multiple with its own rows
    again (from its first row on); then each process keeps its contiguous 1/`processes` share.
    """

    def __init__(self, source: keras.utils.PyDataset, devices: int, processes: int = 1, index: int = 0):
        super().__init__(workers=source.workers, use_multiprocessing=source.use_multiprocessing,
                         max_queue_size=source.max_queue_size)
        self.source, self.devices, self.processes, self.index = source, devices, processes, index

    def __len__(self) -> int:
        return len(self.source)

    @property
    def num_batches(self):
        return self.source.num_batches

    def __getitem__(self, index: int):
        batch = self.source[index]
        size = len(keras.tree.flatten(batch)[0])
        filled = -(-size // self.devices) * self.devices
        rows = np.arange(filled) % size
        share = filled // self.processes
        rows = rows[self.index * share:(self.index + 1) * share]
        if filled == size and self.processes == 1:
            return batch
        return keras.tree.map_structure(lambda a: None if a is None else np.asarray(a)[rows], batch)


def require_compiled(model, plan: Plan) -> None:
    """A multi-process JAX job needs a jit-compiled train step: run op by op, every op of every step is a
    cross-process computation (minutes per step, or processes waiting on each other's ops)."""
    if plan.processes > 1 and not model.jit_compile:
        eager = [layer.name for layer in model._flatten_layers() if getattr(layer, "supports_jit", True) is False]
        raise DeepsuiteError(f"a run in {plan.processes} processes needs an XLA-compiled model, but this one runs "
                             f"op by op on JAX (layers that do not support jit: {', '.join(eager) or 'none named'}); "
                             "leave those layers out (e.g. --set model.augment=false) or train in one process")


def local_model(model, rebuild):
    """After a multi-process fit: the model's weights in a model built on this process's devices alone.

    The trained weights are global arrays over every process's devices; process 0 evaluates and exports
    alone, so it copies them (replicated: each process holds them whole) into `rebuild()`'s fresh model.
    A single process keeps its model (its replicated weights evaluate and save as they are).
    """
    if keras.backend.backend() != "jax":
        return model
    import jax

    if jax.process_count() == 1:
        return model
    fresh = rebuild()
    fresh.set_weights([np.asarray(v.value.addressable_data(0)) for v in model.weights])
    return fresh
