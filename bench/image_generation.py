"""Benchmark: image-generation `default` preset on Fashion-MNIST against the keras-io WGAN-GP recipe (target: our
test FID <= the peer's). Both train on the same training images (our train split) for the same CPU budget (the
CPU seconds our fit took; the peer stops at the first step boundary past it) and are scored by the same code:
FID and KID of 10,000 generated images against the 10,000 test images, improved precision/recall, on the
features of the pipeline's cached FID classifier, with the real-vs-real floor (train vs test) beside them.

    python bench/image_generation.py [--preset default] [--set key=value ...] [--store bench/results/mlruns]
    python bench/image_generation.py --preset smoke      # quick end-to-end check: figures, targets not gated

Exits 1 when a target is missed (except with --preset smoke). The peer's step is written for TensorFlow, the
default backend. The machine may be shared: CPU seconds (not wall) are what the two runs are matched on.
"""
from __future__ import annotations

import importlib
import sys

from harness import FitCpuMarks, describe_data, finish, parser, run_bench, verdict
from peers import keras_io_wgan_gp as peer
from record import BenchResult, Figure, ratio_lines, save

from deepsuite.pipelines.image_generation import evaluation, features
from deepsuite.pipelines.image_generation.pipeline import ImageGenerationPipeline

importlib.import_module("deepsuite.pipelines.image_generation.model")  # loaded now, not mid-run
SMOKE_PEER_CPU, SMOKE_PEER_BATCH = 4.0, 64  # smoke: a step or two of the peer, its code end to end


class TimedPipeline(FitCpuMarks, ImageGenerationPipeline):
    """The pipeline with its fit's CPU seconds marked (harness.FitCpuMarks)."""


def main() -> int:
    args = parser(__doc__).parse_args()
    pipeline = TimedPipeline()
    pipeline.name = "image-generation"  # what the registry sets on the instances it makes
    bench = run_bench(pipeline, args)
    config, result = bench.config, bench.result
    fit_cpu = pipeline.fit_cpu
    fit_seconds, epochs = bench.fit_seconds, bench.epochs
    m = result.metrics
    splits = pipeline.splits
    n = int(m["test_samples"])
    mc = config.model
    print(f"image-generation bench: {splits.info.name}, preset {args.preset} {' '.join(args.overrides)}")
    print(f"  run {result.run_name} ({result.run_id}); {mc.kind}, latent {mc.latent_dim}, generator "
          f"{mc.generator_widths}, discriminator {mc.discriminator_widths}; {epochs} epochs x "
          f"{len(splits.train)} images, batch {config.train.batch_size}")
    print(f"  training wall {fit_seconds:.0f} s, CPU {fit_cpu:.0f} s (validation FID each epoch included)")

    # the peer: same training images, same CPU budget, scored by the same code on the same test images
    smoke = args.preset == "smoke"  # smoke: the peer's code end to end in a step or two of batch 64
    budget = min(fit_cpu, SMOKE_PEER_CPU) if smoke else fit_cpu
    generator, facts = peer.train(splits.train.x, budget, config.seed,
                                  batch_size=SMOKE_PEER_BATCH if smoke else peer.BATCH_SIZE)
    print(f"  peer: keras-io WGAN-GP, {facts['steps']} steps of batch {facts['batch_size']} "
          f"({facts['epochs']:.2f} epochs of {facts['steps_per_epoch']} steps) in CPU {facts['cpu_seconds']:.0f} s "
          f"(budget {budget:.0f} s), wall {facts['wall_seconds']:.0f} s")
    classifier, _ = features.classifier(config, splits)
    peer_images = peer.sample(generator, n, config.seed)
    theirs = evaluation.feature_scores(features.extractor(classifier), peer_images, splits, config)

    data_line = describe_data(splits, config.seed)
    print(f"  scored on N = {n} generated vs the first {n} test images; features: the cached FID classifier "
          f"(test accuracy {m['test_feature_classifier_accuracy']:.4f})")
    print(f"  {'':<28} {'FID':>9} {'KID':>9} {'precision':>10} {'recall':>7}")
    rows = [("ours (EMA generator)", {k[5:]: v for k, v in m.items() if k.startswith("test_")}),
            ("peer (keras-io WGAN-GP)", theirs)]
    for name, s in rows:
        print(f"  {name:<28} {s['fid']:9.3f} {s['kid']:9.5f} {s['precision']:10.3f} {s['recall']:7.3f}")
    print(f"  {'floor (real train vs test)':<28} {m['test_real_fid']:9.3f} {m['test_real_kid']:9.5f}")
    met = m["test_fid"] <= theirs["fid"]
    print(f"  our FID <= peer FID (target, same data and CPU budget): {verdict(met)} "
          f"({m['test_fid']:.3f} vs {theirs['fid']:.3f}); KID ours {m['test_kid']:.5f} vs {theirs['kid']:.5f}")
    print(f"  whole run wall {bench.wall:.0f} s; peak memory {bench.peak_mb:.0f} MB")
    print(f"  {bench.load_line()}")
    bench.log({"bench_fit_seconds": fit_seconds, "bench_fit_cpu_seconds": fit_cpu,
               "bench_peer_fid": theirs["fid"], "bench_peer_kid": theirs["kid"],
               "bench_peer_precision": theirs["precision"], "bench_peer_recall": theirs["recall"],
               "bench_peer_steps": float(facts["steps"]), "bench_peer_cpu_seconds": facts["cpu_seconds"]})

    record = BenchResult(
        "image_generation", "python bench/image_generation.py", f"test FID (N = {n}, FID-classifier features)",
        False, Figure(f"DCGAN, spectral norm + EMA ({epochs} epochs)", m["test_fid"], fit_seconds,
                      f"KID {m['test_kid']:.5f}, CPU {fit_cpu:.0f} s"),
        [Figure(f"keras-io WGAN-GP ({facts['epochs']:.2f} epochs, same CPU budget)", theirs["fid"],
                facts["wall_seconds"], f"KID {theirs['kid']:.5f}, CPU {facts['cpu_seconds']:.0f} s; "
                f"our train split")],
        config.seed, data_line.split(" | ", 1)[1],
        "recipe fixed before the bench (no selection on test); real-vs-real floor "
        f"FID {m['test_real_fid']:.3f}",
        [f"our FID <= keras-io WGAN-GP FID: {'met' if met else 'NOT met'}"])
    print("\n".join("  " + line for line in ratio_lines(record)))
    if args.preset == "default" and not args.overrides:
        print(f"recorded in {save(record)}")
    return finish(args.preset)


if __name__ == "__main__":
    sys.exit(main())
