"""Benchmark: streaming image folders (issue 25). Targets: the streamed run's peak RSS does not grow with the
folder (50,000 images within 10% of 10,000, both under 4 GB), and its images/second is at least 0.95x that
of `keras.utils.image_dataset_from_directory` feeding the same model (median of 3). The in-memory path on
the same folders is reported too: it should refuse or warn, never swap.

Folders of 256 x 256 RGB JPEGs are built offline from Fashion-MNIST (Debian package), enlarged and tinted
with a per-image colour, ten classes, under --workdir (kept for the next bench run). Every configuration
runs in its own subprocess (peak RSS = that process's `resource.getrusage` maximum) and trains the
image-classification CNN at image_size [224, 224], batch 32, for --steps steps; images/second is timed
after --warmup steps (graph compilation), with the process's CPU milliseconds per image beside it (all its
threads: decoding and training), which a busy shared machine disturbs less than the wall clock.

    python bench/streaming.py [--sizes 10000 50000] [--steps 60] [--repeats 3] [--model smoke|default]

The in-memory runs use DEEPSUITE_MEMORY_BUDGET=--budget (default 8G, a shared machine's share), so the
decision the loader takes is the one a user with that much memory meets.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SIDE, IMAGE_SIZE, BATCH, CLASSES = 256, (224, 224), 32, 10
MODELS = {  # the CNN of the pipeline's presets, with a size-free head for 224 x 224 inputs
    "smoke": ["model.widths=[8,16]", "model.blocks_per_stage=1", "model.dense_units=32", "model.head=gap"],
    "default": ["model.head=gap"],
}


# ---------------------------------------------------------------------------------------------- folders
def _write_chunk(job) -> None:
    import numpy as np
    from PIL import Image

    from deepsuite.common.data.idx import read_idx
    from deepsuite.common.data.labeled_images import DEBIAN_FASHION_MNIST

    root, start, stop = job
    x = read_idx(DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz")
    y = read_idx(DEBIAN_FASHION_MNIST / "train-labels-idx1-ubyte.gz")
    rng = np.random.default_rng(start)
    for i in range(start, stop):
        path = Path(root) / f"class_{y[i % len(y)]}" / f"{i:06d}.jpg"
        if path.exists():
            continue
        grey = np.asarray(Image.fromarray(x[i % len(x)]).resize((SIDE, SIDE), Image.BICUBIC), dtype=np.float32)
        tint = rng.uniform(0.35, 1.0, size=3).astype(np.float32)
        background = rng.uniform(0, 60, size=3).astype(np.float32)
        rgb = np.clip(background + grey[..., None] * tint, 0, 255).astype(np.uint8)
        Image.fromarray(rgb).save(path, quality=90)


def build_folder(root: Path, count: int) -> Path:
    """root/class_<k>/<i>.jpg for i < count (Fashion-MNIST train images, repeated past 60,000)."""
    done = root / ".complete"
    if done.exists():
        return root
    for k in range(CLASSES):
        (root / f"class_{k}").mkdir(parents=True, exist_ok=True)
    chunks = [(str(root), s, min(s + 1000, count)) for s in range(0, count, 1000)]
    started = time.time()
    with Pool(os.cpu_count() or 1) as pool:
        pool.map(_write_chunk, chunks)
    done.write_text(str(count))
    print(f"  built {root} ({count} JPEGs, {time.time() - started:.0f} s)", flush=True)
    return root


# ------------------------------------------------------------------------------------------- one config
def child(kind: str, folder: str, steps: int, warmup: int, model_kind: str, seed: int) -> dict:
    """Runs in its own process: prepare the data `kind` way, train `steps` steps, report the figures."""
    import resource

    import keras

    from deepsuite.app import registry
    from deepsuite.common import config as config_lib
    from deepsuite.common.training import optimizer
    from deepsuite.pipelines.image_classification import data
    from deepsuite.pipelines.image_classification.model import build_cnn

    pipeline = registry.get("image-classification")
    overrides = [f"data.source=folder:{folder}", f"data.image_size=[{IMAGE_SIZE[0]},{IMAGE_SIZE[1]}]",
                 "data.channels=3", f"train.batch_size={BATCH}", f"seed={seed}",
                 f"data.cache_dir={Path(folder).parent / 'cache'}", *MODELS[model_kind]]
    if kind in ("stream", "memory"):
        overrides.append(f"data.stream={kind == 'stream'}")
    config = config_lib.resolve(pipeline.config_cls, pipeline.presets, "default", None, overrides)
    keras.utils.set_random_seed(seed)
    started = time.time()
    if kind == "keras":
        import tensorflow as tf

        dataset = keras.utils.image_dataset_from_directory(
            folder, image_size=IMAGE_SIZE, batch_size=BATCH, seed=seed, shuffle=True, verbose=False)
        x = dataset.map(lambda images, labels: (tf.cast(tf.round(images), tf.uint8), labels),
                        num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
        size = int(dataset.cardinality()) * BATCH
    else:
        try:
            splits = data.load_data(config)
        except Exception as exc:  # noqa: BLE001 - the refusal is the figure
            return {"kind": kind, "refused": f"{type(exc).__name__}: {exc}",
                    "prepare_seconds": time.time() - started,
                    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        x, size = data.fit_data(splits, config).x, len(splits.train)
        x = getattr(x, "dataset", x)  # as runner.fit_model feeds it: tf.data on TensorFlow
    prepare = time.time() - started
    model = build_cnn((*IMAGE_SIZE, 3), CLASSES, config.model)
    model.compile(optimizer=optimizer(config.train, steps), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    marks, cpu = [], []  # wall clock and this process's CPU time (all its threads) at each step's end

    def mark(batch, logs):
        marks.append(time.time())
        cpu.append(time.process_time())

    timer = keras.callbacks.LambdaCallback(on_train_batch_end=mark)
    fit_args = {"batch_size": BATCH} if kind == "memory" else {}
    y = splits.train.y if kind == "memory" else None
    model.fit(x, y, epochs=1, steps_per_epoch=steps, callbacks=[timer], verbose=0, shuffle=kind == "memory",
              **fit_args)
    timed = len(marks) - warmup
    return {"kind": kind, "train_images": size, "prepare_seconds": prepare,
            "images_per_second": timed * BATCH / (marks[-1] - marks[warmup - 1]),
            "cpu_ms_per_image": 1000 * (cpu[-1] - cpu[warmup - 1]) / (timed * BATCH),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_child(kind: str, folder: Path, args, env: dict | None = None) -> dict:
    command = [sys.executable, __file__, "--child", kind, "--folder", str(folder), "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--model", args.model]
    proc = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        return {"kind": kind, "refused": f"exit {proc.returncode}: {proc.stderr.strip()[-400:]}"}
    return json.loads(lines[-1])


# ---------------------------------------------------------------------------------------------- report
def main() -> int:
    parsed = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parsed.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000])
    parsed.add_argument("--steps", type=int, default=60, help="training steps per configuration")
    parsed.add_argument("--warmup", type=int, default=5, help="steps left out of the timing")
    parsed.add_argument("--repeats", type=int, default=3)
    parsed.add_argument("--model", choices=sorted(MODELS), default="smoke")
    parsed.add_argument("--budget", default="8G", help="DEEPSUITE_MEMORY_BUDGET for the in-memory runs")
    parsed.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "deepsuite-streaming-bench")
    parsed.add_argument("--child", help=argparse.SUPPRESS)
    parsed.add_argument("--folder", help=argparse.SUPPRESS)
    args = parsed.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.folder, args.steps, args.warmup, args.model, 0)), flush=True)
        return 0

    from harness import verdict

    print(f"streaming bench: image_size {list(IMAGE_SIZE)}, batch {BATCH}, {args.steps} steps "
          f"({args.warmup} untimed), model {args.model} ({' '.join(MODELS[args.model])}), median of "
          f"{args.repeats}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}", flush=True)
    figures = {}
    for count in args.sizes:
        folder = build_folder(args.workdir / f"jpeg-{count}", count)
        runs = {"stream": [], "keras": []}
        for _ in range(args.repeats):  # alternated, so a change in the machine's load hits both loaders alike
            for kind in runs:
                runs[kind].append(run_child(kind, folder, args))
        runs["memory"] = [run_child("memory", folder, args, {"DEEPSUITE_MEMORY_BUDGET": args.budget})]
        figures[count] = runs
        print(f"{count} images:", flush=True)
        for kind, label in (("stream", "deepsuite streaming"), ("keras", "keras image_dataset_from_directory"),
                            ("memory", f"deepsuite in memory (budget {args.budget})")):
            done = [r for r in runs[kind] if "refused" not in r]
            if not done:
                print(f"  {label:44s} refused: {runs[kind][0]['refused'][:300]} "
                      f"(peak RSS {runs[kind][0].get('peak_rss_mb', float('nan')):.0f} MB)")
                continue
            speed = statistics.median(r["images_per_second"] for r in done)
            rss = statistics.median(r["peak_rss_mb"] for r in done)
            prepare = statistics.median(r["prepare_seconds"] for r in done)
            each = ", ".join(f"{r['images_per_second']:.0f}" for r in done)
            cost = statistics.median(r["cpu_ms_per_image"] for r in done)
            print(f"  {label:44s} {speed:7.1f} images/s (runs {each})  {cost:5.1f} CPU ms/image  "
                  f"peak RSS {rss:6.0f} MB  data ready in {prepare:.1f} s")
    ok = True
    for count, runs in figures.items():
        ours = [r for r in runs["stream"] if "refused" not in r]
        peer = [r for r in runs["keras"] if "refused" not in r]
        if ours and peer:
            ratio = statistics.median(r["images_per_second"] for r in ours) / \
                statistics.median(r["images_per_second"] for r in peer)
            print(f"  {count}: streaming / keras images/s = {ratio:.2f}   (target >= 0.95: {verdict(ratio >= 0.95)})")
            ok &= ratio >= 0.95
    rss = {c: statistics.median(r["peak_rss_mb"] for r in runs["stream"] if "refused" not in r)
           for c, runs in figures.items() if any("refused" not in r for r in runs["stream"])}
    if len(rss) >= 2:
        small, large = rss[min(rss)], rss[max(rss)]
        growth = large / small - 1
        print(f"  peak RSS {max(rss)} vs {min(rss)} images: {large:.0f} vs {small:.0f} MB, {growth:+.1%}   "
              f"(target within 10%: {verdict(abs(growth) <= 0.10)}; both < 4096 MB: "
              f"{verdict(max(large, small) < 4096)})")
        ok &= abs(growth) <= 0.10 and max(large, small) < 4096
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
