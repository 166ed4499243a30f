"""Benchmark: image-classification `default` preset on Fashion-MNIST (target: test accuracy >= 93.0%,
training <= 10 min on a 2-core CPU). Prints accuracy, training seconds, images/second and peak memory,
and writes the same figures to the run in MLflow.

    python bench/image_classification.py [--preset default] [--set key=value ...] [--store bench/results/mlruns]
    python bench/image_classification.py --preset smoke      # quick end-to-end check: figures, targets not gated

Exits 1 when a target is missed (except with --preset smoke).
"""
from __future__ import annotations

import sys

from harness import finish, parser, run_bench, verdict

from deepsuite.app import registry

REFERENCE = [
    ("keras-io simple MNIST convnet (15 epochs, this machine)", 0.901, 125),
    ("small two-conv nets (zalandoresearch benchmark)", 0.925, None),
    ("ResNet-18 (zalandoresearch benchmark)", 0.949, None),
    ("WRN-40-4 (zalandoresearch benchmark)", 0.967, None),
]


def main() -> int:
    args = parser(__doc__).parse_args()
    bench = run_bench(registry.get("image-classification"), args)
    fit_seconds, epochs = bench.fit_seconds, bench.epochs
    images_per_second = int(bench.run.data.params["data.size.train"]) * epochs / fit_seconds
    bench.log({"bench_fit_seconds": fit_seconds, "bench_images_per_second": images_per_second})

    accuracy = bench.result.metrics["test_accuracy"]
    print(f"image-classification bench, preset {args.preset} {' '.join(args.overrides)}")
    print(f"  run {bench.result.run_name} ({bench.result.run_id})")
    print(f"  test accuracy      {accuracy:.4f}   (target >= 0.930: {verdict(accuracy >= 0.93)})")
    print(f"  training seconds   {fit_seconds:.0f}    (target <= 600: {verdict(fit_seconds <= 600)}; {epochs} epochs)")
    print(f"  images/second      {images_per_second:.0f}")
    print(f"  peak memory        {bench.peak_mb:.0f} MB")
    print(f"  {bench.load_line()}")
    print("  for scale:")
    for name, acc, seconds in REFERENCE:
        print(f"    {acc:.3f}  {name}" + (f", {seconds} s" if seconds else ""))
    return finish(args.preset)


if __name__ == "__main__":
    sys.exit(main())
