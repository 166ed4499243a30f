"""Are the `full` presets ready for one GPU? What each costs: estimated anywhere, measured where a GPU is.

    KERAS_BACKEND=jax python bench/gpu_full.py --plan                 # any machine, minutes on a CPU
    KERAS_BACKEND=jax python bench/gpu_full.py --measure [--steps 50] # on the GPU machine, one script, < 10 min

Both build each pipeline's `full` model on its default (offline) data exactly as `deepsuite run --preset full`
does (same config, precision policy, fit data), then:

--plan     lowers one training step (forward and backward of the real batch, a sum of the outputs standing in
           for the loss) with XLA and prints its FLOPs and XLA's memory figures (arguments + temporaries), the
           steps the full run takes (steps per epoch x epochs; early stopping may end sooner) and the time the
           run needs *if it were compute-bound* at a stated share of the H200's measured bf16 rate. Small models
           are launch-bound on a GPU, so this is a lower bound: --measure gives the real figure.
--measure  trains the model with Keras's fit on its real batches for a few warm-up steps (compile) and then
           `--steps` timed steps; prints seconds per step, examples (or tokens) per second, the device's peak
           memory (jax memory_stats) and GPU utilisation sampled with nvidia-smi while the timed steps run, and
           extrapolates the full run's training time as steps x seconds per step (evaluation not included).

Models with their own train_step (image generation) have no single forward pass to lower: --plan reports
their parameters and steps only; --measure times them like the rest. Results go to --out as JSON.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

H200_BF16_FLOPS = 790e12   # measured dense bf16 matrix rate of the lent H200 (the device tool's KINDS notes)
ASSUMED_SHARE = 0.3        # share of that rate a well-fed small conv/transformer step reaches, stated not measured
PNEUMONIA = Path(os.environ.get("DEEPSUITE_PNEUMONIAMNIST", REPO.parent / "shared" / "data" / "pneumoniamnist.npz"))
PIPELINES = ["image-classification", "medical-imaging", "image-denoising", "image-generation", "recommendation",
             "sentiment-analysis", "text-generation"]


def arguments(argv=None) -> argparse.Namespace:
    parsed = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parsed.add_mutually_exclusive_group(required=True)
    mode.add_argument("--plan", action="store_true", help="FLOPs, memory and steps per full run (any machine)")
    mode.add_argument("--measure", action="store_true", help="time real training steps (meant for the GPU)")
    parsed.add_argument("--pipelines", default=",".join(PIPELINES), help="comma-separated (default: all seven)")
    parsed.add_argument("--preset", default="full", help="preset to size (default: full; smoke for a quick check)")
    parsed.add_argument("--steps", type=int, default=50, help="--measure: timed training steps per pipeline")
    parsed.add_argument("--warmup", type=int, default=5, help="--measure: untimed steps first (compilation)")
    parsed.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override applied to every pipeline's preset")
    parsed.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "gpu_full.json")
    args = parsed.parse_args(argv)
    unknown = sorted(set(args.pipelines.split(",")) - set(PIPELINES))
    if unknown:
        parsed.error(f"unknown pipeline(s) {', '.join(unknown)}; choose from {', '.join(PIPELINES)}")
    return args


class Prepared:
    """One pipeline's full-preset model, its fit data and the size of its full run."""

    def __init__(self, name: str, preset: str, overrides: list[str]):
        from deepsuite.app import registry
        from deepsuite.common import backend, config as config_lib

        self.name = name
        self.pipeline = registry.get(name)
        self.config = config_lib.resolve(self.pipeline.config_cls, self.pipeline.presets, preset, None,
                                         [*data_overrides(name), *overrides])
        train = self.config.train
        self.policy = backend.configure(self.config.seed, False, train.mixed_precision)["precision_policy"]
        self.splits = self.pipeline.load_data(self.config)
        self.model = self.pipeline.build_model(self.config, self.splits)
        self.data = self.pipeline.fit_data(self.splits, self.config)
        self.batch_size = train.batch_size
        self.steps_per_epoch = self._steps_per_epoch()
        self.epochs = train.epochs

    def _steps_per_epoch(self) -> int:
        import keras

        if self.data.steps_per_epoch:
            return int(self.data.steps_per_epoch)
        if isinstance(self.data.x, keras.utils.PyDataset):
            return len(self.data.x)
        return math.ceil(len(_first_leaf(self.data.x)) / self.batch_size)

    def batch(self):
        """The first real training batch (inputs, targets)."""
        import keras

        if isinstance(self.data.x, keras.utils.PyDataset):
            item = self.data.x[0]
            return (item[0], item[1]) if isinstance(item, tuple) else (item, None)
        take = _slicer(slice(0, self.batch_size))
        return take(self.data.x), take(self.data.y)

    def examples_unit(self) -> tuple[str, int]:
        """What one example is worth in the throughput figure: tokens for language models, else examples."""
        context = getattr(getattr(self.config, "model", None), "context", None)
        return ("tokens", int(context)) if context else ("examples", 1)

    @property
    def parameters(self) -> int:
        return int(self.model.count_params())

    @property
    def custom_step(self) -> bool:
        import keras

        return type(self.model).train_step is not keras.Model.train_step


def data_overrides(name: str) -> list[str]:
    """The offline copy of a default dataset the suite cannot fetch without the internet (MedMNIST's file)."""
    if name == "medical-imaging" and PNEUMONIA.is_file():
        return [f"data.source=medmnist:{PNEUMONIA}"]
    return []


def _first_leaf(x):
    while isinstance(x, (dict, list, tuple)):
        x = next(iter(x.values())) if isinstance(x, dict) else x[0]
    return x


def _slicer(index):
    def take(x):
        if x is None:
            return None
        if isinstance(x, dict):
            return {k: take(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return type(x)(take(v) for v in x)
        return x[index]
    return take


def plan(prepared: Prepared) -> dict:
    """XLA's FLOPs and memory for one forward+backward step of the real batch (JAX backend)."""
    figures = {"parameters": prepared.parameters, "steps_per_epoch": prepared.steps_per_epoch,
               "epochs": prepared.epochs, "steps": prepared.steps_per_epoch * prepared.epochs,
               "batch_size": prepared.batch_size, "precision_policy": prepared.policy}
    if prepared.custom_step:
        return figures | {"flops_per_step": None, "note": "own train_step: --measure times it"}
    import jax
    import jax.numpy as jnp

    model = prepared.model
    x, _ = prepared.batch()

    def proxy_loss(trainable, non_trainable, inputs):
        outputs, _ = model.stateless_call(trainable, non_trainable, inputs, training=True)
        return sum(jnp.sum(leaf.astype("float32")) for leaf in jax.tree_util.tree_leaves(outputs))

    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    compiled = jax.jit(jax.grad(proxy_loss)).lower(trainable, non_trainable, x).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float(cost.get("flops", 0.0))
    memory = compiled.memory_analysis()
    step_bytes = (memory.argument_size_in_bytes + memory.temp_size_in_bytes + memory.output_size_in_bytes
                  if memory is not None else None)
    # Adam keeps two more copies of the trainable weights beside them (float32 under either policy).
    optimizer_bytes = 2 * sum(int(math.prod(v.shape)) * 4 for v in model.trainable_variables)
    bound_seconds = flops * figures["steps"] / (H200_BF16_FLOPS * ASSUMED_SHARE)
    return figures | {"flops_per_step": flops, "step_memory_bytes": step_bytes,
                      "memory_estimate_bytes": (step_bytes or 0) + optimizer_bytes,
                      "compute_bound_seconds": bound_seconds}


class GpuSampler:
    """nvidia-smi's utilisation and memory, sampled every half second while a block runs (None without it)."""

    def __init__(self):
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True) if shutil.which("nvidia-smi") else None

    def _poll(self):
        query = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits", "-i", "0"]
        while not self._stop.wait(0.5):
            out = subprocess.run(query, capture_output=True, text=True, check=False).stdout.strip()
            try:
                util, used = (float(v) for v in out.split(","))
            except ValueError:
                continue
            self.samples.append((util, used))

    def __enter__(self):
        if self._thread:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread:
            self._thread.join()

    def mean_utilisation(self) -> float | None:
        return sum(u for u, _ in self.samples) / len(self.samples) if self.samples else None

    def peak_used_mib(self) -> float | None:
        return max(m for _, m in self.samples) if self.samples else None


def step_clock(warmup: int, steps: int):
    """A Keras callback that lets `warmup` steps run (compilation), times the next `steps` with the GPU sampled,
    then stops training; `.seconds` stays None when training ended first."""
    import keras

    class StepClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.done, self.started, self.seconds, self.sampler = 0, None, None, GpuSampler()

        def on_train_batch_end(self, batch, logs=None):
            self.done += 1
            if self.done == warmup:
                self.sampler.__enter__()
                self.started = time.perf_counter()
            elif self.done == warmup + steps:
                self.seconds = time.perf_counter() - self.started
                self.sampler.__exit__()
                self.model.stop_training = True

    return StepClock()


def measure(prepared: Prepared, steps: int, warmup: int) -> dict:
    """Seconds per real training step after compilation, through the suite's own fit path (runner.fit_model:
    the same feed, callbacks and distribution as `deepsuite run`), throughput, device memory, GPU utilisation."""
    import tempfile

    from deepsuite.common import runner

    warmup = max(1, min(warmup, prepared.steps_per_epoch - 1))
    steps = max(1, min(steps, prepared.steps_per_epoch * prepared.epochs - warmup))
    clock = step_clock(warmup, steps)
    with tempfile.TemporaryDirectory(prefix="gpu-full-") as work:
        runner.fit_model(prepared.pipeline, prepared.model, prepared.splits, prepared.config, None, Path(work),
                         extra_callbacks=(clock,))
    if clock.seconds is None:
        raise RuntimeError(f"training ended after {clock.done} steps, before {warmup} + {steps} were timed")
    per_step = clock.seconds / steps
    unit, per_example = prepared.examples_unit()
    full_steps = prepared.steps_per_epoch * prepared.epochs
    return {"timed_steps": steps, "seconds_per_step": per_step,
            f"{unit}_per_second": prepared.batch_size * per_example / per_step,
            "full_training_seconds": per_step * full_steps, "steps": full_steps,
            "device_peak_bytes": _device_peak_bytes(), "gpu_utilisation_percent": clock.sampler.mean_utilisation(),
            "gpu_memory_used_mib": clock.sampler.peak_used_mib(), "parameters": prepared.parameters,
            "precision_policy": prepared.policy}


def _device_peak_bytes() -> int | None:
    import keras

    if keras.backend.backend() != "jax":
        return None
    import jax

    stats = jax.local_devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use")


def describe(name: str, figures: dict) -> str:
    if "error" in figures:
        return f"{name:<22} FAILED: {figures['error']}"
    gib = 1024 ** 3
    parts = [f"{figures['parameters'] / 1e6:6.2f} M params", f"{figures['steps']:>6} steps"]
    if figures.get("flops_per_step"):
        parts += [f"{figures['flops_per_step'] / 1e9:8.1f} GFLOP/step",
                  f"~{figures['memory_estimate_bytes'] / gib:5.2f} GiB",
                  f">= {figures['compute_bound_seconds'] / 60:6.1f} min if compute-bound"]
    elif "note" in figures:
        parts.append(figures["note"])
    if "seconds_per_step" in figures:
        unit = next(k for k in figures if k.endswith("_per_second"))
        util = figures["gpu_utilisation_percent"]
        peak = figures["device_peak_bytes"]
        parts += [f"{figures['seconds_per_step'] * 1e3:7.1f} ms/step", f"{figures[unit]:,.0f} {unit.replace('_', ' ')}",
                  f"full training ~{figures['full_training_seconds'] / 60:.1f} min",
                  f"peak {peak / gib:.2f} GiB" if peak else "peak memory n/a",
                  f"GPU {util:.0f} %" if util is not None else "GPU utilisation n/a"]
    return f"{name:<22} " + " | ".join(parts)


def register_from_pyproject() -> None:
    """Where the suite is on sys.path but not installed (the GPU machine), its pipelines come from pyproject."""
    import tomllib

    from deepsuite.app import registry

    if registry.names():
        return
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for name, target in project["entry-points"]["deepsuite.pipelines"].items():
        registry.register(name, target)


def main(argv=None) -> int:
    args = arguments(argv)
    import keras

    register_from_pyproject()

    from deepsuite.common.backend import device

    where = device()
    if args.plan and keras.backend.backend() != "jax":
        sys.exit("--plan lowers the step with XLA: run it with KERAS_BACKEND=jax")
    mode = "plan" if args.plan else "measure"
    print(f"gpu_full --{mode}: preset {args.preset}, backend {keras.backend.backend()} on {where}"
          + (f", {args.steps} timed steps after {args.warmup}" if args.measure else
             f"; compute-bound time at {ASSUMED_SHARE:.0%} of {H200_BF16_FLOPS / 1e12:.0f} TFLOP/s (H200 bf16)"))
    results = {}
    for name in args.pipelines.split(","):
        started = time.time()
        try:
            prepared = Prepared(name, args.preset, args.overrides)
            figures = plan(prepared) if args.plan else measure(prepared, args.steps, args.warmup)
        except Exception as error:  # one pipeline failing must not hide the others' figures
            figures = {"error": f"{type(error).__name__}: {error}"[:500]}
        figures["wall_seconds"] = time.time() - started
        results[name] = figures
        print(describe(name, figures), flush=True)
        keras.backend.clear_session()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"mode": mode, "preset": args.preset, "backend": keras.backend.backend(),
                                    "device": where, "date": time.strftime("%Y-%m-%d"), "results": results},
                                   indent=1))
    print(f"written to {args.out}")
    return 1 if any("error" in f for f in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
