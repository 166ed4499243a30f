"""Benchmark of `deepsuite tune` (issue: hyperparameter search). Prints measured figures, nothing else.

1. Overhead per trial on the smoke preset: everything a trial spends outside fit() (oracle, MLflow child
   run, clearing the session, building the model, checkpoints, parent-run updates), as a share of the
   trial's wall time. Target < 5%. Measured two ways: the wall time between the ends of consecutive
   trials minus their fit() time (everything included), and the per-stage split each trial logs.
2. A Hyperband search of image-classification over its default space (CPU) against the untuned
   `default` preset trained on the same data with the same epoch budget. Target: the search's best
   validation accuracy beats the untuned one. The issue's full version is 20 trials on all of
   Fashion-MNIST; on a shared 2-core machine use the flags to shrink it, and the output says what ran.

    python bench/tuning.py                           # both parts, reduced budget (see defaults)
    python bench/tuning.py --part hyperband --trials 20 --max-epochs 20 --train-samples 0   # full
    python bench/tuning.py --preset smoke   # quick check: 2 overhead trials, 2 Hyperband trials of the smoke
                                            # preset (2 epochs); figures and targets printed, not gated

Exits 1 when a target is missed (except with --preset smoke).

Measured on the 2-core development machine, 2026-11-27 (other work sharing the CPU during part 2):
    overhead, 6 smoke trials: 3.3% of trial time (median 3.5%): build 0.09 s, clear_session 0.05 s,
        MLflow child run 0.04 s, oracle 0.02 s per trial
    --part hyperband --train-samples 10000 --max-epochs 6 (20 trials, 26.5 min): best trial val accuracy
        0.9000 (test 0.8938) vs the untuned default preset with the same data and 6 epochs 0.9000 (test
        0.8912): a tie on validation, so "beats the untuned default" was NOT shown at this budget; the
        default preset is itself a hand-tuned recipe, and its exact shape (24-48-96, blocks 2-2-1) is
        not a point of the search space. With base width 24 added to the space (the default's), the same
        command, alone on the machine: best 0.8990 (test 0.8924) in 19.2 min vs 0.9000 (test 0.8912): NOT met.
    Session 3, same command, after three changes to the search (first trial = the recipe; a continued
        Hyperband trial restores its optimizer state on one schedule over --max-epochs; half of the new
        configurations redraw one or two values of the best so far): 20 trials in 69.1 min (machine shared),
        best trial val accuracy 0.9120 (test 0.8998; base width 48, batch 64, otherwise the recipe) vs the
        untuned default 0.9000 (test 0.8912): MET (+0.0120 val, +0.0086 test). The recipe itself, trained
        2 epochs then continued to 6 inside the search, gave 0.9000, as the untuned run does. With plain
        random draws (first two changes only), 19 trials never beat the recipe (best 0.9000).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from harness import finish, verdict, watch_data  # noqa: E402

# --preset smoke replaces these flags: the smallest search that still prints every figure and target
SMOKE = {"overhead_trials": 2, "trials": 2, "max_epochs": 2, "train_samples": 0}


def overhead(store: Path, trials: int) -> None:
    from deepsuite.app import registry
    from deepsuite.tuning.search import SearchOptions, run_search

    ends: list[float] = []
    numbers: list[dict] = []

    def record(trial: dict) -> None:
        ends.append(time.time())
        numbers.append(trial)

    options = SearchOptions("image-classification", tuner="random", max_trials=trials, preset="smoke",
                            store=store, name="bench-overhead")
    print(f"\n== overhead per trial: random search, {trials} trials, image-classification smoke preset ==")
    run_search(options, echo=lambda line: print("  " + line), on_trial_end=record,
               pipeline=watch_data(registry.get("image-classification")))
    print(f"{'trial':>5} {'wall s':>8} {'fit s':>8} {'outside fit s':>14} {'share':>7}")
    shares, walls, fits = [], 0.0, 0.0
    for i in range(1, len(ends)):   # wall between consecutive trial ends: the next trial, everything included
        wall, fit = ends[i] - ends[i - 1], numbers[i]["fit_seconds"]
        shares.append((wall - fit) / wall)
        walls, fits = walls + wall, fits + fit
        print(f"{numbers[i]['trial_id']:>5} {wall:8.2f} {fit:8.2f} {wall - fit:14.2f} {shares[-1]:7.1%}")
    total = (walls - fits) / walls if walls else float("nan")
    print(f"overhead per trial (all trials after the first): {total:.1%} of trial time "
          f"(median {statistics.median(shares):.1%}); target < 5%: {verdict(total < 0.05)}")
    stages = sorted({k for n in numbers for k in n if k.startswith("overhead.")})
    print("where it goes (mean seconds per trial): " + ", ".join(
        f"{k.removeprefix('overhead.')} {statistics.mean(n.get(k, 0.0) for n in numbers):.2f}" for k in stages))


def hyperband(store: Path, trials: int, max_epochs: int, train_samples: int, factor: int, preset: str) -> None:
    from deepsuite.common import config as config_lib
    from deepsuite.app import registry
    from deepsuite.common import runner
    from deepsuite.tuning.search import SearchOptions, run_search
    from deepsuite.tuning.tuners import hyperband_trials

    # On a subset a trial is a few hundred steps: too few for BatchNorm's 0.99 moving averages (measured here:
    # 3,000 images x 4 epochs give 0.34 test accuracy at 0.99 and 0.84 at 0.9), so both sides use 0.9.
    subset = [f"data.max_train_samples={train_samples}", "model.bn_momentum=0.9"] if train_samples else []
    per_iteration = hyperband_trials(max_epochs, factor)
    print(f"\n== Hyperband on image-classification, {preset} preset, default space, CPU: {trials} trials (capped; "
          f"one bracket set = {per_iteration}), max {max_epochs} epochs, factor {factor}, train samples "
          f"{train_samples or 'as in the preset'} ==")
    started = time.time()
    options = SearchOptions("image-classification", tuner="hyperband", max_trials=trials, max_epochs=max_epochs,
                            factor=factor, preset=preset, overrides=subset, store=store, name="bench-hyperband")
    result = run_search(options, echo=lambda line: print("  " + line),
                        pipeline=watch_data(registry.get("image-classification")))
    search_minutes = (time.time() - started) / 60

    print(f"\n-- untuned {preset} preset, same data and epoch budget --")
    pipeline = watch_data(registry.get("image-classification"))
    config = config_lib.resolve(pipeline.config_cls, pipeline.presets, preset, None,
                                [*subset, f"train.epochs={max_epochs}", "train.verbose=0",
                                 "tracking.run_name=bench-untuned-default"])
    started = time.time()
    baseline = runner.run(pipeline, config, store_dir=store, echo=lambda line: None)
    baseline_minutes = (time.time() - started) / 60
    baseline_val = max(baseline.history["val_accuracy"])
    best = result.best
    print(f"{'':28}{'val accuracy':>14}{'test accuracy':>15}{'minutes':>9}")
    print(f"{'untuned ' + preset + ' preset':28}{baseline_val:14.4f}{baseline.metrics['test_accuracy']:15.4f}"
          f"{baseline_minutes:9.1f}")
    print(f"{'Hyperband best (trial id ' + best.trial_id + ')':28}{best.value:14.4f}"
          f"{best.test_metrics['test_accuracy']:15.4f}{search_minutes:9.1f}")
    print(f"target: search beats the untuned {preset} preset on validation accuracy: "
          f"{verdict(best.value > baseline_val)} ({best.value - baseline_val:+.4f}); on test accuracy: "
          f"{best.test_metrics['test_accuracy'] - baseline.metrics['test_accuracy']:+.4f}")
    print(f"best trial hyperparameters: {best.values}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["overhead", "hyperband", "both"], default="both")
    parser.add_argument("--overhead-trials", type=int, default=6)
    parser.add_argument("--trials", type=int, default=20, help="Hyperband trials (issue: 20)")
    parser.add_argument("--max-epochs", type=int, default=4, help="Hyperband max epochs (issue: default preset's 15)")
    parser.add_argument("--train-samples", type=int, default=3000, help="train subset; 0 = all 54,000 (issue)")
    parser.add_argument("--factor", type=int, default=3)
    parser.add_argument("--store", type=Path, help="MLflow store folder (default: a temporary one)")
    parser.add_argument("--preset", choices=["default", "smoke"], default="default",
                        help="smoke: a tiny search (sets the flags in SMOKE); targets printed, not gated")
    args = parser.parse_args()
    if args.preset == "smoke":
        vars(args).update(SMOKE)
    import keras

    print(f"deepsuite tuning bench - keras {keras.__version__} backend {keras.backend.backend()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or Path(tmp) / "mlruns"
        if args.part in ("overhead", "both"):
            overhead(store, args.overhead_trials)
        if args.part in ("hyperband", "both"):
            hyperband(store, args.trials, args.max_epochs, args.train_samples, args.factor, args.preset)
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    return finish(args.preset)


if __name__ == "__main__":
    sys.exit(main())
