"""Benchmark: image-denoising `default` preset on Set12, Gaussian sigma=25 (target: mean PSNR >= 29.0 dB with
<= 15 min training on a 2-core CPU). Prints ours per image beside the noisy input and non-local means (same
code, same noise), the published BM3D / DnCNN-S figures for scale, training wall and CPU time, and the load.

BM3D and non-local means are run in the same process on the same noisy images (bench/peers), on Set12 and on a
second set of 8 natural greyscale photographs from installed packages, disjoint from the training images and
from Set12 (`SECOND_SET`: scikit-image's coins, moon and text, PyWavelets' ascent and aero, matplotlib's
grace_hopper, scikit-learn's china and flower; colour ones converted to 8-bit luma). "Ahead of BM3D" is judged on
both sets.

    python bench/image_denoising.py [--preset default] [--set key=value ...] [--store bench/results/mlruns]
    python bench/image_denoising.py --preset smoke      # quick end-to-end check: figures, targets not gated

Exits 1 when a target is missed (except with --preset smoke); the training target is judged on wall time.

The machine may be shared: training CPU seconds / 2 estimates the wall time on an idle 2-core machine,
and the load average before/after is printed so the wall time can be judged.
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

from harness import FitCpuMarks, SHARED_DATA, describe_data, finish, parser, run_bench, verdict
from peers.classical_denoisers import classical_psnrs
from record import BenchResult, Figure, ratio_lines, save

import keras
import numpy as np

from deepsuite.pipelines.image_denoising.data import LUMA, skimage_folder
from deepsuite.pipelines.image_denoising.evaluation import evaluate_images, mean_metrics
from deepsuite.pipelines.image_denoising.pipeline import ImageDenoisingPipeline

SET12 = SHARED_DATA / "set12"
TARGET_PSNR, TARGET_MINUTES = 29.0, 15.0
# "beat BM3D within the same CPU budget as today's default" (issue 26): the float32 20-epoch default of
# 2026-12-01 trained in 1,421 CPU-seconds on a quiet 2-core machine (838 s wall)
CPU_BUDGET_SECONDS = 1421.0
REFERENCE = [  # Set12, sigma=25, from Zhang et al. 2017 (DnCNN), Table 3
    ("BM3D (Dabov et al. 2007)", 29.97),
    ("DnCNN-S (Zhang et al. 2017, 17 layers, GPU-trained)", 30.44),
]


SECOND_SET = ("text", "coins", "flower", "china", "grace_hopper", "moon", "ascent", "aero")  # smallest first


def _grey8(pixels) -> np.ndarray:
    """uint8 grey or RGB -> HxWx1 float32 on 0..1, quantised to 8 bits like Set12's PNGs."""
    x = np.asarray(pixels, np.float32)
    if x.ndim == 3:
        x = x[..., :3] @ LUMA
    return (np.round(np.clip(x, 0, 255)) / 255.0).astype(np.float32)[..., None]


def second_set(limit: int | None = None) -> tuple[list[np.ndarray], list[str], str]:
    """The second test set, read from the installed packages that ship it (never copied into this repo)."""
    import matplotlib.cbook
    import pywt.data
    from PIL import Image
    from sklearn.datasets import load_sample_image

    sources = {  # name -> (the package that ships it, how to read it)
        "coins": ("scikit-image", lambda: Image.open(skimage_folder() / "coins.png")),
        "moon": ("scikit-image", lambda: Image.open(skimage_folder() / "moon.png")),
        "text": ("scikit-image", lambda: Image.open(skimage_folder() / "text.png")),
        "ascent": ("PyWavelets", pywt.data.ascent),
        "aero": ("PyWavelets", pywt.data.aero),
        "grace_hopper": ("matplotlib", lambda: Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg"))),
        "china": ("scikit-learn", lambda: load_sample_image("china.jpg")),
        "flower": ("scikit-learn", lambda: load_sample_image("flower.jpg")),
    }
    names = list(SECOND_SET[:limit])
    images = [_grey8(sources[name][1]()) for name in names]
    return images, names, ", ".join(f"{name} ({sources[name][0]})" for name in names)


class TimedPipeline(FitCpuMarks, ImageDenoisingPipeline):
    """The pipeline with its fit's CPU seconds marked (harness.FitCpuMarks)."""


def main() -> int:
    args = parser(__doc__).parse_args()
    if not SET12.is_dir():
        sys.exit(f"Set12 not found at {SET12}")
    pipeline = TimedPipeline()
    pipeline.name = "image-denoising"  # what the registry sets on the instances it makes
    bench = run_bench(pipeline, args, [f"data.test_folder={SET12}", "noise.kind=gaussian", "noise.sigma=25"])
    config, result = bench.config, bench.result
    fit_cpu = pipeline.fit_cpu
    fit_seconds = bench.fit_seconds
    bench.log({"bench_fit_seconds": fit_seconds, "bench_fit_cpu_seconds": fit_cpu})

    table = Path(result.report_path).parent / "tables" / "per_image.csv"
    rows = [row for row in csv.DictReader(table.open()) if row["image"].strip('"') != "mean"]
    splits = pipeline.splits
    data_line = describe_data(splits, config.seed)
    peers = classical_psnrs(splits.test.x, config.noise, config.seed)
    check_same_noise(peers, [float(row["noisy_psnr"]) for row in rows], [row["image"] for row in rows])
    m = result.metrics
    ev = config.evaluation
    print(f"image-denoising bench: Set12, gaussian sigma=25, preset {args.preset} {' '.join(args.overrides)}")
    mc = config.model
    shape = (f"width {mc.filters()}, {mc.levels} levels, {mc.blocks} convs per level" if mc.kind == "unet"
             else f"depth {mc.depth}, width {mc.filters()}, downscale {mc.downscale}")
    print(f"  run {result.run_name} ({result.run_id}); {mc.kind} ({shape}); {len(result.history['loss'])} epochs x "
          f"{config.data.patches_per_epoch} patches of {config.data.patch_size}px, batch {config.train.batch_size}, "
          f"images sampled by {config.data.sampling}, {keras.mixed_precision.global_policy().name} compute; "
          f"self-ensemble (8 flips/turns) at test: "
          f"{'on' if ev.self_ensemble else 'off'}")
    print_table([(row["image"].strip('"'), f"{row['height']}x{row['width']}", float(row["noisy_psnr"]),
                  float(row["nl_means_psnr"]), bm3d_psnr, float(row["psnr"]))
                 for row, (_, bm3d_psnr, _) in zip(rows, peers["BM3D"], strict=True)])
    met = verdict(m["test_psnr"] >= TARGET_PSNR)
    print(f"  mean PSNR ours {m['test_psnr']:.2f} dB (target >= {TARGET_PSNR}: {met}); noisy input "
          f"{m['test_noisy_psnr']:.2f} dB; non-local means {m['test_nl_means_psnr']:.2f} dB")
    print(f"  mean SSIM ours {m['test_ssim']:.4f}; noisy {m['test_noisy_ssim']:.4f}; "
          f"non-local means {m['test_nl_means_ssim']:.4f}")
    print(f"  training wall      {fit_seconds:.0f} s ({fit_seconds / 60:.1f} min; target <= {TARGET_MINUTES:.0f} min "
          f"on an idle 2-core CPU: {verdict(fit_seconds <= TARGET_MINUTES * 60)})")
    print(f"  training CPU       {fit_cpu:.0f} s  -> about {fit_cpu / 2 / 60:.1f} min on an idle 2-core machine "
          f"(budget <= {CPU_BUDGET_SECONDS:.0f} CPU-s, the 2026-12-01 default's: "
          f"{verdict(fit_cpu <= CPU_BUDGET_SECONDS)})")
    print(f"  whole run wall     {bench.wall:.0f} s; denoising {m['test_seconds_per_megapixel']:.2f} s per megapixel")
    print(f"  {bench.load_line()}")
    print("  for scale (published, Set12 sigma=25):")
    for name, value in REFERENCE:
        print(f"    {value:.2f} dB  {name}")

    second_x, second_names, second_source = second_set(config.data.max_test_images)
    second = evaluate_images(pipeline.model, second_x, second_names, config.noise, config.seed, config.data.channels,
                             ev.tile, ev.overlap, mc.size_multiple(), "none", 0, ev.self_ensemble)
    second_peers = classical_psnrs(second_x, config.noise, config.seed)
    check_same_noise(second_peers, [r.scores["noisy_psnr"] for r in second], second_names)
    second_m = mean_metrics(second)
    print(f"  second set: {len(second)} natural greyscale photographs, not trained on and not in Set12, "
          f"same noise protocol and seed ({second_source})")
    print_table([(r.name, f"{r.shape[0]}x{r.shape[1]}", r.scores["noisy_psnr"], nlm, bm3d_psnr, r.scores["psnr"])
                 for r, (_, bm3d_psnr, _), (_, nlm, _) in zip(second, second_peers["BM3D"],
                                                              second_peers["non-local means"], strict=True)])
    set12_bm3d, second_bm3d = mean_psnr(peers["BM3D"]), mean_psnr(second_peers["BM3D"])
    ahead12, ahead2 = m["test_psnr"] > set12_bm3d, second_m["psnr"] > second_bm3d
    print(f"  mean PSNR, Set12:      ours {m['test_psnr']:.2f} dB, BM3D {set12_bm3d:.2f} dB "
          f"({m['test_psnr'] - set12_bm3d:+.2f}), non-local means {mean_psnr(peers['non-local means']):.2f} dB")
    print(f"  mean PSNR, second set: ours {second_m['psnr']:.2f} dB, BM3D {second_bm3d:.2f} dB "
          f"({second_m['psnr'] - second_bm3d:+.2f}), non-local means "
          f"{mean_psnr(second_peers['non-local means']):.2f} dB")
    ours_seconds = fit_seconds + sum(float(row["seconds"]) for row in rows)
    result = BenchResult(
        "image_denoising", "python bench/image_denoising.py", "Set12 sigma=25 mean PSNR (dB)", True,
        Figure(f"{mc.kind} (training + denoising Set12)", m["test_psnr"], ours_seconds,
               f"second set ({len(second)} photos): {second_m['psnr']:.2f} dB"),
        [Figure(f"{name} ({'true sigma' if name == 'BM3D' else 'estimated sigma'}, denoising Set12)",
                mean_psnr(values), float(sum(t for _, _, t in values)),
                f"second set ({len(second)} photos): {mean_psnr(second_peers[name]):.2f} dB")
         for name, values in peers.items()],
        config.seed, data_line.split(" | ", 1)[1],
        "U-Net vs DnCNN, per-image patch sampling, test-time self-ensemble and bfloat16 compute (more epochs in "
        "the same CPU) chosen on held-out photos (neither Set12 nor the second set), test once after",
        [f"PSNR >= {TARGET_PSNR} dB: {'met' if m['test_psnr'] >= TARGET_PSNR else 'NOT met'}",
         f"ahead of BM3D on Set12 ({m['test_psnr']:.2f} vs {set12_bm3d:.2f} dB): {'met' if ahead12 else 'NOT met'}",
         f"ahead of BM3D on the second set ({second_m['psnr']:.2f} vs {second_bm3d:.2f} dB, "
         f"{len(second)} photos): {'met' if ahead2 else 'NOT met'}",
         f"ahead of BM3D (both sets): {'met' if ahead12 and ahead2 else 'NOT met'}",
         f"training CPU <= {CPU_BUDGET_SECONDS:.0f} s ({fit_cpu:.0f} s): "
         f"{'met' if fit_cpu <= CPU_BUDGET_SECONDS else 'NOT met'}"])
    print(f"  ahead of BM3D on Set12 (target): {verdict(ahead12)}")
    print(f"  ahead of BM3D on the second set (target): {verdict(ahead2)}")
    print(f"  ahead of BM3D on both sets (target): {verdict(ahead12 and ahead2)}")
    print("\n".join("  " + line for line in ratio_lines(result)))
    if args.preset == "default" and not args.overrides:
        print(f"recorded in {save(result)}")
    return finish(args.preset)


def mean_psnr(values) -> float:
    return float(sum(p for _, p, _ in values) / len(values))


def check_same_noise(peers, noisy_psnrs: list[float], names: list[str]) -> None:
    """The peers rebuilt the noisy images themselves: their noisy PSNRs must be the run's, image by image."""
    for (noisy, _, _), ours, name in zip(peers["BM3D"], noisy_psnrs, names, strict=True):
        if abs(noisy - ours) > 1e-3:
            sys.exit(f"the peers' noisy {name} has PSNR {noisy:.4f}, the run's {ours:.4f}: not the same noise")


def print_table(rows) -> None:
    """rows: (image, size, noisy, non-local means, BM3D, ours) PSNRs in dB."""
    print(f"  {'image':>12} {'size':>8} {'noisy':>7} {'NL-means':>9} {'BM3D':>7} {'ours':>7}")
    for name, size, noisy, nlm, bm3d_psnr, ours in rows:
        print(f"  {name:>12} {size:>8} {noisy:7.2f} {nlm:9.2f} {bm3d_psnr:7.2f} {ours:7.2f}")


if __name__ == "__main__":
    sys.exit(main())
