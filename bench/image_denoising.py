"""Benchmark: image-denoising `default` preset on Set12, Gaussian sigma=25 (target: mean PSNR >= 29.0 dB with
<= 15 min training on a 2-core CPU). Prints ours per image beside the noisy input and non-local means (same
code, same noise), the published BM3D / DnCNN-S figures for scale, training wall and CPU time, and the load.

    python bench/image_denoising.py [--preset default] [--set key=value ...] [--store bench/results/mlruns]

The machine may be shared: training CPU seconds / 2 estimates the wall time on an idle 2-core machine,
and the load average before/after is printed so the wall time can be judged.
"""
from __future__ import annotations

import argparse
import csv
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from common import config as config_lib, runner  # noqa: E402
from common.tracking import Tracker  # noqa: E402
from pipelines.image_denoising.pipeline import ImageDenoisingPipeline  # noqa: E402

SET12 = Path(__file__).resolve().parents[2] / "shared" / "data" / "set12"
TARGET_PSNR, TARGET_MINUTES = 29.0, 15.0
REFERENCE = [  # Set12, sigma=25, from Zhang et al. 2017 (DnCNN), Table 3
    ("BM3D (Dabov et al. 2007)", 29.97),
    ("DnCNN-S (Zhang et al. 2017, 17 layers, GPU-trained)", 30.44),
]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class TimedPipeline(ImageDenoisingPipeline):
    """Marks CPU time where fit starts (fit_data is called just before fit) and ends (evaluate follows it)."""

    marks: dict[str, float] = {}

    def fit_data(self, splits, config):
        self.marks["fit_start"] = cpu_seconds()
        return super().fit_data(splits, config)

    def evaluate(self, model, splits, config):
        self.marks["fit_end"] = cpu_seconds()
        return super().evaluate(model, splits, config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--store", type=Path, default=Path("bench/results/mlruns"))
    args = parser.parse_args()
    if not SET12.is_dir():
        sys.exit(f"Set12 not found at {SET12}")

    pipeline = TimedPipeline()
    overrides = [f"data.test_folder={SET12}", "noise.kind=gaussian", "noise.sigma=25", *args.overrides]
    config = config_lib.resolve(pipeline.config_cls, pipeline.presets, args.preset, None, overrides)
    load_before = os.getloadavg()
    started = time.time()
    result = runner.run(pipeline, config, store_dir=args.store, echo=lambda line: None)
    wall = time.time() - started
    load_after = os.getloadavg()
    fit_cpu = pipeline.marks["fit_end"] - pipeline.marks["fit_start"]

    tracker = Tracker(None, args.store)
    run = tracker.get_run(result.run_id)
    fit_seconds = run.data.metrics["fit_seconds"]
    figures = {"bench_fit_seconds": fit_seconds, "bench_fit_cpu_seconds": fit_cpu, "bench_wall_seconds": wall,
               "bench_load_before": load_before[0], "bench_load_after": load_after[0]}
    tracker.start(pipeline.name, result.run_name, {}, resume_run_id=result.run_id)
    tracker.log_metrics(figures)
    tracker.end("FINISHED")

    table = Path(result.report_path).parent / "tables" / "per_image.csv"
    rows = list(csv.DictReader(table.open()))
    m = result.metrics
    print(f"image-denoising bench: Set12, gaussian sigma=25, preset {args.preset} {' '.join(args.overrides)}")
    mc = config.model
    shape = (f"width {mc.filters()}, {mc.levels} levels, {mc.blocks} convs per level" if mc.kind == "unet"
             else f"depth {mc.depth}, width {mc.filters()}, downscale {mc.downscale}")
    print(f"  run {result.run_name} ({result.run_id}); {mc.kind} ({shape}); {len(result.history['loss'])} epochs x "
          f"{config.data.patches_per_epoch} patches of {config.data.patch_size}px, batch {config.train.batch_size}")
    print(f"  {'image':>6} {'size':>8} {'noisy':>7} {'NL-means':>9} {'ours':>7}   {'SSIM noisy/NLM/ours':>20}")
    for row in rows:
        size = f"{row['height']}x{row['width']}" if row["height"] else ""
        print(f"  {row['image'].strip(chr(34)):>6} {size:>8} {float(row['noisy_psnr']):7.2f} "
              f"{float(row['nl_means_psnr']):9.2f} {float(row['psnr']):7.2f}   "
              f"{float(row['noisy_ssim']):.3f}/{float(row['nl_means_ssim']):.3f}/{float(row['ssim']):.3f}")
    verdict = "met" if m["test_psnr"] >= TARGET_PSNR else "NOT met"
    print(f"  mean PSNR ours {m['test_psnr']:.2f} dB (target >= {TARGET_PSNR}: {verdict}); noisy input "
          f"{m['test_noisy_psnr']:.2f} dB; non-local means {m['test_nl_means_psnr']:.2f} dB")
    print(f"  mean SSIM ours {m['test_ssim']:.4f}; noisy {m['test_noisy_ssim']:.4f}; "
          f"non-local means {m['test_nl_means_ssim']:.4f}")
    print(f"  training wall      {fit_seconds:.0f} s ({fit_seconds / 60:.1f} min; target <= {TARGET_MINUTES:.0f} min "
          f"on an idle 2-core CPU)")
    print(f"  training CPU       {fit_cpu:.0f} s  -> about {fit_cpu / 2 / 60:.1f} min on an idle 2-core machine")
    print(f"  whole run wall     {wall:.0f} s; denoising {m['test_seconds_per_megapixel']:.2f} s per megapixel")
    print(f"  load average       {load_before[0]:.1f} before, {load_after[0]:.1f} after (2 cores, shared machine)")
    print("  for scale (published, Set12 sigma=25):")
    for name, value in REFERENCE:
        print(f"    {value:.2f} dB  {name}")


if __name__ == "__main__":
    main()
