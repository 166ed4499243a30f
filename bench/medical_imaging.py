"""Benchmark: medical-imaging `default` preset on PneumoniaMNIST, beside MedMNIST v2's published table.

    nice -n 5 .venv/bin/python bench/medical_imaging.py [--data ../shared/data/pneumoniamnist.npz]
                                                        [--preset default] [--set key=value ...]
                                                        [--peer-epochs 100]
    nice -n 5 .venv/bin/python bench/medical_imaging.py --preset smoke   # quick end-to-end check, not gated

Trains once through the real runner (MLflow store in a temporary folder unless --store is given),
then prints the test-split figures at the threshold chosen on validation, the training time and the
machine load, beside the issue's targets (ROC-AUC >= 0.98, accuracy >= 0.92, specificity >= 0.85), and
exits 1 when one is missed (except with --preset smoke).

Then, in the same process on the same split, MedMNIST v2's ResNet-18 (28) baseline recipe (bench/peers/
medmnist_resnet.py: 100 epochs, model chosen on validation AUC) is trained and scored on the test split, and
the two are printed side by side with the AUC delta and the training-time ratio. 100 epochs of a full-width
ResNet-18 take hours on two CPU cores: `--peer-epochs N` shortens the recipe (milestones kept at 50 % / 75 %;
the epoch count is printed and goes into the peer's name). The smoke preset runs 1 epoch of a width-16 one.
Preset `default` without --set records bench/figures/medical_imaging.json.

Measured (2-core AMD EPYC, TensorFlow, 2026-12-03; test split, once per seed, after the recipe was chosen on
validation log loss the same day; default preset = three 28 px CNNs of three stages 24/48/96, averaged,
threshold at 95 % validation sensitivity):

    command                  ROC-AUC  ACC    SENS   SPEC   training wall
    --set seed=42            0.9755   0.929  0.982  0.842  377 s
    --set seed=2             0.9779   0.939  0.982  0.868  369 s
    --set seed=1             0.9780   0.939  0.982  0.868  374 s

The ROC-AUC target is missed on all three seeds (mean 0.9771) and specificity on seed 42 (accuracy and time
are met), and the bench exits 1. How the recipe was chosen, the single CNN it replaced and the earlier
figures chosen on test are in pipelines/medical_imaging/README.md.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from harness import describe_data, finish, verdict, watch_data  # noqa: E402
from record import BenchResult, Figure, ratio_lines, save  # noqa: E402

# MedMNIST v2 (Yang et al., Scientific Data 2023), PneumoniaMNIST test AUC / ACC, as quoted in the issue
PUBLISHED = [
    ("ResNet-18 (28 px)", 0.944, 0.854),
    ("ResNet-50 (224 px)", 0.962, 0.884),
    ("AutoKeras", 0.947, 0.878),
    ("Google AutoML Vision", 0.991, 0.946),
]
TARGETS = {"roc_auc": 0.98, "accuracy": 0.92, "specificity": 0.85}
TRAIN_BUDGET_S = 600


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "pneumoniamnist.npz"))
    parser.add_argument("--preset", default="default")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--store", type=Path, help="MLflow store folder (default: a temporary folder)")
    parser.add_argument("--peer-epochs", type=int, default=None, metavar="N",
                        help="epochs of the MedMNIST ResNet-18 (28) peer (default: the recipe's 100; 1 with "
                             "--preset smoke); its learning-rate milestones stay at 50%% / 75%% of them")
    args = parser.parse_args()
    peer_epochs = args.peer_epochs or (1 if args.preset == "smoke" else 100)
    peer_width = 16 if args.preset == "smoke" else 64   # smoke: a narrow ResNet-18, so the check stays short

    from deepsuite.common import config as config_lib
    from deepsuite.app import registry
    from deepsuite.common import runner

    pipeline = watch_data(registry.get("medical-imaging"))
    seen = []
    load = pipeline.load_data
    pipeline.load_data = lambda config: seen.append(load(config)) or seen[-1]   # the peer trains on these splits
    overrides = [f"data.source=medmnist:{args.data}", "train.verbose=0", *args.overrides]
    config = config_lib.resolve(pipeline.config_cls, pipeline.presets, args.preset, None, overrides)
    load_before = os.getloadavg()
    store = args.store or Path(tempfile.mkdtemp(prefix="bench-medical-"))
    fit_cpu = _time_fit_cpu(runner)
    started = time.time()
    result = runner.run(pipeline, config, store_dir=store, echo=lambda line: None)
    wall = time.time() - started
    load_after = os.getloadavg()

    import mlflow

    run = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store.resolve()}/mlflow.db").get_run(result.run_id)
    fit_seconds = run.data.metrics.get("fit_seconds", float("nan"))
    m = {k.removeprefix("test_"): v for k, v in result.metrics.items()}

    import keras

    print(f"medical-imaging bench: preset {args.preset}, backend {keras.backend.backend()}, {os.cpu_count()} CPU cores, "
          f"load average {load_before[0]:.1f} before / {load_after[0]:.1f} after")
    print(f"overrides: {' '.join(args.overrides) or '(none)'}")
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"training {fit_seconds:.0f} s wall (budget {TRAIN_BUDGET_S} s), {fit_cpu[0]:.0f} s CPU; whole run "
          f"{wall:.0f} s wall, {usage.ru_utime + usage.ru_stime:.0f} s CPU; run {result.run_id} in {store}")
    print(f"threshold {m['threshold']:.4f} chosen on validation ({config.evaluation.threshold_policy}), applied to test;"
          f" validation ROC-AUC {m['val_roc_auc']:.4f}")
    print()
    print(f"{'PneumoniaMNIST test':<36}{'ROC-AUC':>9}{'ACC':>8}{'SENS':>8}{'SPEC':>8}{'PREC':>8}{'F1':>8}")
    print(f"{'deepsuite (this run)':<36}{m['roc_auc']:>9.3f}{m['accuracy']:>8.3f}{m['sensitivity']:>8.3f}"
          f"{m['specificity']:>8.3f}{m['precision']:>8.3f}{m['f1']:>8.3f}")
    for name, auc, acc in PUBLISHED:
        print(f"{name + ' [MedMNIST v2]':<36}{auc:>9.3f}{acc:>8.3f}{'-':>8}{'-':>8}{'-':>8}{'-':>8}")
    print()
    for key, target in TARGETS.items():
        print(f"target {key} >= {target}: {m[key]:.4f} {verdict(m[key] >= target)}")
    print(f"target training <= {TRAIN_BUDGET_S} s: {fit_seconds:.0f} s {verdict(fit_seconds <= TRAIN_BUDGET_S)}")
    print(f"test confusion at the threshold: TP {m['true_positives']:.0f}  FN {m['false_negatives']:.0f}  "
          f"TN {m['true_negatives']:.0f}  FP {m['false_positives']:.0f}")

    print()
    splits = seen[-1]
    data_line = describe_data(splits, config.seed)
    from peers.medmnist_resnet import resnet18_figures

    classes = len(splits.metadata.class_names)
    peer = resnet18_figures(splits.train.x, splits.train.y, splits.val.x, splits.val.y, splits.test.x,
                            splits.test.y, classes, config.seed, epochs=peer_epochs, width=peer_width,
                            positive=splits.metadata.positive_index)
    recipe = "" if peer_width == 64 else f", width {peer_width}"
    epochs_text = f"{peer_epochs} epoch{'' if peer_epochs == 1 else 's'}"
    print(f"peer: MedMNIST v2 ResNet-18 (28) recipe, {epochs_text} (recipe: 100; lr 0.001 x0.1 at 50%/75%)"
          f"{recipe}, Adam, batch 128, seed {config.seed}; best validation AUC {peer['val_auc']:.4f} at epoch "
          f"{peer['best_epoch']}; test ROC-AUC {peer['auc']:.4f}, accuracy {peer['accuracy']:.4f} (argmax) vs ours "
          f"{m['roc_auc']:.4f} / {m['accuracy']:.4f} (validation-chosen threshold)")
    members = config.model.ensemble_members
    ours = f"CNN {'/'.join(map(str, config.model.widths))}" + (f", {members} averaged" if members > 1 else "")
    result = BenchResult(
        "medical_imaging", "python bench/medical_imaging.py", "test ROC-AUC", True,
        Figure(f"{ours} ({config.train.epochs} epochs)", m["roc_auc"],
               fit_seconds, f"test accuracy {m['accuracy']:.4f} at the validation-chosen threshold"),
        [Figure(f"MedMNIST ResNet-18 (28) ({epochs_text}{recipe})", peer["auc"], peer["seconds"],
                f"test accuracy {peer['accuracy']:.4f} (argmax); model of epoch {peer['best_epoch']} chosen on "
                "validation AUC; our train/validation/test split")],
        config.seed, data_line.split(" | ", 1)[1],
        "recipe chosen on validation log loss (bench/select_on_validation.py), test scored once",
        [f"{key} >= {target}: {'met' if m[key] >= target else 'NOT met'}" for key, target in TARGETS.items()]
        + [f"training <= {TRAIN_BUDGET_S} s: {'met' if fit_seconds <= TRAIN_BUDGET_S else 'NOT met'}"])
    print("\n".join(ratio_lines(result)))
    if args.preset == "default" and not args.overrides:   # the peer's epochs are in its name
        print(f"recorded in {save(result)}")
    return finish(args.preset)


def _time_fit_cpu(runner) -> list[float]:
    """Wrap the runner's fit so the process CPU seconds spent training (user + system, all threads) are
    known apart from data loading and evaluation: on a shared machine CPU time, unlike wall time, hardly
    grows with the other jobs' load (on two idle cores this workload ran at ~1.2 cores: wall ~ CPU / 1.2)."""
    import resource

    seconds = [float("nan")]
    fit_model = runner.fit_model

    def timed(*args, **kwargs):
        before = resource.getrusage(resource.RUSAGE_SELF)
        try:
            return fit_model(*args, **kwargs)
        finally:
            after = resource.getrusage(resource.RUSAGE_SELF)
            seconds[0] = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime

    runner.fit_model = timed
    return seconds


if __name__ == "__main__":
    sys.exit(main())
