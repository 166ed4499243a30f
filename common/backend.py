"""The few backend-specific switches (seed, determinism, precision, device), in one place.

TensorFlow is imported only when it is the active Keras backend; JAX and PyTorch users never need it.
"""
from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import keras


def configure(seed: int, deterministic: bool, mixed_precision: bool) -> dict[str, str]:
    """Apply the run's seed and numeric settings; return them (and the environment) as MLflow tags."""
    backend = keras.backend.backend()
    keras.utils.set_random_seed(seed)
    determinism = "off"
    if deterministic:
        if backend == "tensorflow":
            import tensorflow as tf

            tf.config.experimental.enable_op_determinism()
            determinism = "tf.enable_op_determinism"
        elif backend == "jax":
            determinism = "jax (deterministic on CPU; XLA_FLAGS for GPU)"
        elif backend == "torch":
            import torch

            torch.use_deterministic_algorithms(True, warn_only=True)
            determinism = "torch.use_deterministic_algorithms"
    where = device()
    policy = precision_policy(mixed_precision, where)
    keras.mixed_precision.set_global_policy(policy)
    bfloat16 = {"cpu_bfloat16": cpu_bfloat16()} if policy == "mixed_bfloat16" else {}
    return bfloat16 | {
        "backend": backend,
        "device": where,
        "seed": str(seed),
        "determinism": determinism,
        "precision_policy": keras.mixed_precision.global_policy().name,
        "version.python": platform.python_version(),
        "version.keras": keras.__version__,
        f"version.{backend}": backend_version(backend),
        "host": platform.node(),
    } | git_tags()


def precision_policy(mixed_precision: bool, device: str) -> str:
    """The Keras dtype policy of `train.mixed_precision`: float16 compute on GPUs, bfloat16 on CPUs."""
    if not mixed_precision:
        return "float32"
    return "mixed_float16" if device != "cpu" else "mixed_bfloat16"


def precision_note(env_tags: dict[str, str]) -> str | None:
    """A line to print before training when the run computes in bfloat16 on a CPU that only emulates it."""
    if env_tags.get("cpu_bfloat16") != "emulated":
        return None
    return ("note: train.mixed_precision computes in bfloat16, which this CPU has no instructions for: it is "
            "emulated and may train slower than float32 (--set train.mixed_precision=false)")


BFLOAT16_CPU_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}  # x86 AVX-512 / AMX; "bf16" is aarch64's


def cpu_bfloat16(cpuinfo: str | None = None) -> str:
    """"native" when the CPU has bfloat16 instructions, "emulated" when it has none, "unknown" off Linux.

    Why: mixed_bfloat16 speeds training on a CPU with native bfloat16 (about 1.3x for the denoiser on an
    AVX512_BF16 machine) but is emulated, and slower than float32, on one without; a preset sized for the
    first should say so on the second rather than run slowly in silence.
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return "unknown"
    flags = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in {"flags", "features"}:
            flags.update(value.split())
    if not flags:
        return "unknown"
    return "native" if flags & BFLOAT16_CPU_FLAGS else "emulated"


def device() -> str:
    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            return f"gpu x{len(gpus)}" if gpus else "cpu"
        if backend == "jax":
            import jax

            devices = jax.devices()
            return devices[0].platform if len(devices) == 1 else f"{devices[0].platform} x{len(devices)}"
        if backend == "torch":
            import torch

            return "cuda" if torch.cuda.is_available() else "cpu"
    except Exception:  # noqa: BLE001 - device probing must never stop a run
        pass
    return "cpu"


def backend_version(backend: str) -> str:
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}.get(backend, backend)
    try:
        return __import__(module).__version__
    except Exception:  # noqa: BLE001
        return "unknown"


def git_revision(folder: Path | None = None, ignore: tuple[str, ...] = ()) -> tuple[str, bool] | None:
    """HEAD of the checkout holding `folder` (default: this package) and whether tracked files differ from it
    (paths matching `ignore`, from the checkout's top, do not count); None outside a git checkout. A run or a
    figure made on uncommitted code must not be read as HEAD's. No optional locks: runs in parallel, and a user's
    own git commands, must not trip over each other's index refresh."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "--no-optional-locks", *args], cwd=folder or Path(__file__).resolve().parent, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()

    try:
        head = git("rev-parse", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no", "--", ":/",
                      *(f":(top,exclude){pattern}" for pattern in ignore))
    except (OSError, subprocess.SubprocessError):
        return None
    return (head, bool(changed)) if head else None


def git_tags() -> dict[str, str]:
    """The run's `git_commit` (full HEAD) and `git_dirty` (true when tracked files differ from it) tags."""
    revision = git_revision()
    if revision is None:
        return {"git_commit": "unknown", "git_dirty": "unknown"}
    return {"git_commit": revision[0], "git_dirty": str(revision[1]).lower()}
