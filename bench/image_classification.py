"""Benchmark: image-classification `default` preset on Fashion-MNIST (target: test accuracy >= 93.0%,
training <= 10 min on a 2-core CPU). Prints accuracy, training seconds, images/second and peak memory,
and writes the same figures to the run in MLflow.

    python bench/image_classification.py [--preset default] [--set key=value ...] [--store bench/results/mlruns]
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from common import config as config_lib, registry, runner  # noqa: E402
from common.tracking import Tracker  # noqa: E402

REFERENCE = [
    ("keras-io simple MNIST convnet (15 epochs, this machine)", 0.901, 125),
    ("small two-conv nets (zalandoresearch benchmark)", 0.925, None),
    ("ResNet-18 (zalandoresearch benchmark)", 0.949, None),
    ("WRN-40-4 (zalandoresearch benchmark)", 0.967, None),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--store", type=Path, default=Path("bench/results/mlruns"))
    args = parser.parse_args()

    pipeline = registry.get("image-classification")
    config = config_lib.resolve(pipeline.config_cls, pipeline.presets, args.preset, None, args.overrides)
    load_before = os.getloadavg()
    started = time.time()
    result = runner.run(pipeline, config, store_dir=args.store, echo=lambda line: None)
    wall = time.time() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    tracker = Tracker(None, args.store)
    run = tracker.get_run(result.run_id)
    fit_seconds = run.data.metrics["fit_seconds"]
    epochs = len(result.history["loss"])
    train_images = int(run.data.params["data.size.train"]) * epochs
    figures = {"bench_fit_seconds": fit_seconds, "bench_images_per_second": train_images / fit_seconds,
               "bench_peak_rss_mb": peak_mb, "bench_wall_seconds": wall}
    tracker.start(pipeline.name, result.run_name, {}, resume_run_id=result.run_id)
    tracker.log_metrics(figures)
    tracker.end("FINISHED")

    accuracy = result.metrics["test_accuracy"]
    print(f"image-classification bench, preset {args.preset} {' '.join(args.overrides)}")
    print(f"  run {result.run_name} ({result.run_id})")
    print(f"  test accuracy      {accuracy:.4f}   (target >= 0.930: {'met' if accuracy >= 0.93 else 'NOT met'})")
    print(f"  training seconds   {fit_seconds:.0f}    (target <= 600: {'met' if fit_seconds <= 600 else 'NOT met'};"
          f" {epochs} epochs)")
    print(f"  images/second      {train_images / fit_seconds:.0f}")
    print(f"  peak memory        {peak_mb:.0f} MB")
    print(f"  load average       {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after (2 cores)")
    print("  for scale:")
    for name, acc, seconds in REFERENCE:
        print(f"    {acc:.3f}  {name}" + (f", {seconds} s" if seconds else ""))


if __name__ == "__main__":
    main()
