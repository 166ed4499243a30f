"""Sentiment benchmark: the `default` preset on the VADER movie-review sentences (MR), CPU, through the CLI.

Prints test accuracy (and ROC-AUC, F1, training time) beside the published MR figures, all without
pretrained embeddings except the last reference. Our test set is a fixed 10% stratified split (1,057
sentences, labels = sign of the mean human rating); the references are 10-fold cross-validation on
Pang & Lee's original labels, so read them as scale, not as a like-for-like comparison. With 1,057 test
sentences one standard error of accuracy is about 1.2 points.

    python bench/sentiment_analysis.py                      # default preset (model.kind=ngram)
    python bench/sentiment_analysis.py --kind cnn --kind bigru   # other architectures, same split
    python bench/sentiment_analysis.py --preset smoke       # quick end-to-end check: figures, targets not gated

Exits 1 when the target is missed (except with --preset smoke).

How the default was chosen (best validation accuracy, same split; no setting was picked on test, but test
was scored after the second and third sweeps: see the README's protocol paragraph):
  first sweep, seed 42:
    ngrams=2 lr=3e-3 0.808 | ngrams=3 lr=3e-3 0.811 | ngrams=2 lr=1e-2 0.810 | ngrams=2 wd=1e-2 0.808
    ngrams=2 batch 32 0.809 | ngrams=3 lr=1e-2 0.815 (kept) | cnn + n-gram branch 0.771 | smaller cnn lr=1e-2 0.780
  second sweep, mean best validation accuracy over seeds 42, 1, 2 (ngrams=3, lr 1e-2, 15 epochs, patience 3):
    repeated n-grams counted (previous default)           0.8086 (0.8146 0.8013 0.8098)
    model.ngram_binary=true                               0.8095 (0.8127 0.8042 0.8117)  chosen
    model.nb_alpha=0.5                                    0.7963 (0.8042 0.7947 0.7900)
    model.nb_alpha=2.0                                    0.8083 (0.8108 0.8070 0.8070)
    model.ngram_binary=true model.nb_alpha=2.0            0.8073 (0.8108 0.8023 0.8089)
    model.ngram_prior=1.0 (start at Naive Bayes)          0.7900 (seed 42 only; stopped, clearly lower)
    model.kind=cnn lr=1e-3 model.ngram_weight_scale=10    0.8032 (seed 42 only; stopped, lower, fit 9 min)
  The first, second, fourth and fifth settings lie within 0.25 point of each other, far inside one standard
  error of validation accuracy (~1.2 points): the chosen one wins by 0.1 point, which is noise. The n-gram
  model has plateaued at about 0.81 validation; neither smoothing nor the cnn ensemble moved it up.
  third sweep (issue 4), same protocol; accuracy, and ROC-AUC / log loss where all three seeds ran:
    word n-grams alone (the second sweep's choice)        0.8095 (0.8127 0.8042 0.8117)  AUC 0.874  loss 0.447
    + model.char_ngrams=5 model.char_weight_scale=0.1      0.8114 (0.8108 0.8127 0.8108)  AUC 0.888  loss 0.425  chosen
    + model.char_ngrams=5 at the word step (scale 1.0)     0.7985 (seed 42; best epoch 2: overfits at once)
    + model.char_ngrams=5 model.char_weight_scale=0.3      0.8098 (seed 42)
    + model.char_ngrams=4 (scale 1.0)                      0.8042 (seed 42)
    ensembles, members trained separately with their own early stopping, probabilities averaged:
    word n-grams + cnn (ngrams=0) | + bigru | all three    0.7994 | 0.7975 | 0.8117 (seed 42; cnn alone 0.770,
                                                           bigru alone 0.767: the from-scratch networks are too weak)
    word n-grams + char-only bag (scale 0.3)               0.8121 (0.8127 0.8089 0.8146)
    word n-grams + word-and-char model                     0.8127 (0.8155 0.8117 0.8108)
  The ensembles gain 0.1 point of validation accuracy over the single word-and-char model, which is noise, for
  two or three times the training, so no ensemble was built into the pipeline. Refitting on train + val was not
  tried. The character n-grams win by only 0.2 point of validation accuracy, but ROC-AUC and log loss improve
  on every seed, which is why they were kept.
Measured test accuracy: the first benchmark run (ngrams=2, lr=3e-3) 79.3%, the previous ngrams=3 default
(repeated n-grams counted) 79.7% at seed 42; binary word n-grams, `python bench/sentiment_analysis.py --set seed=S`,
seed 42 / 1 / 2: 79.2 / 79.4 / 79.2% (mean 79.3%, target not met). The current default (word + character
n-grams), same command, 2-core CPU shared with two other jobs (load 3-6): seed 42 81.7% (ROC-AUC 0.894, F1 0.814,
7 epochs, fit 63 s), seed 1 81.5% (0.891, 0.813, 11 epochs, fit 234 s), seed 2 81.7% (0.895, 0.813, 5 epochs, fit
72 s): mean 81.6%, so the 80% target is MET. A whole run took 83-134 CPU-seconds (about 40-70 s of wall time on a
quiet 2-core machine).
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import describe_data, finish, verdict
from peers.nbsvm import nbsvm_accuracy
from record import BenchResult, Figure, ratio_lines, save

from deepsuite.app import registry
from deepsuite.common import config as config_lib

REPO = Path(__file__).resolve().parents[1]
TARGET, TARGET_FIT_S = 0.80, 600
REFERENCES = [  # MR sentence polarity, 10-fold CV (Kim 2014, Table 2; Wang & Manning 2012)
    ("CNN-rand (Kim 2014), random embeddings", 0.761),
    ("NBSVM-bi (Wang & Manning 2012)", 0.794),
    ("CNN-static (Kim 2014), word2vec embeddings", 0.810),
]


def settings(kind: str | None, extra: list[str]) -> list[str]:
    return ["tracking.log_model=false", *([f"model.kind={kind}"] if kind else []), *extra]


def describe(preset: str, kind: str | None, extra: list[str]):
    """Prints the seed, split sizes and test digest of the data the run will use and returns (the splits, that
    line): the run is a separate process, so the splits are loaded here with the same config, and `main` checks
    that the run logged the same data digest. The peer is trained and scored on these splits."""
    pipeline = registry.get("sentiment-analysis")
    config = config_lib.resolve(pipeline.config_cls, pipeline.presets, preset, None, settings(kind, extra))
    splits = pipeline.load_data(config)
    return splits, describe_data(splits, config.seed)


def run(preset: str, kind: str | None, extra: list[str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        args = [sys.executable, "-m", "deepsuite.app.cli", "run", "sentiment-analysis", "--preset", preset]
        for item in settings(kind, extra):
            args += ["--set", item]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
        started = time.time()
        proc = subprocess.run(args, cwd=folder, env=env, capture_output=True, text=True)
        wall = time.time() - started
        if proc.returncode:
            sys.exit(f"run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        metrics = {k: float(v) for k, v in re.findall(r"(test_\w+)=([0-9.]+)", proc.stdout)}
        import mlflow

        client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{folder}/mlruns/mlflow.db")
        run_ = client.search_runs([client.get_experiment_by_name("sentiment-analysis").experiment_id])[0]
        metrics["fit_seconds"] = run_.data.metrics["fit_seconds"]
        metrics["epochs"] = len(client.get_metric_history(run_.info.run_id, "val_accuracy"))
        metrics["wall_seconds"] = wall
        metrics["digest"] = run_.data.params["data.digest"]
        metrics["sizes"] = "/".join(run_.data.params[f"data.size.{k}"] for k in ("train", "val", "test"))
        return metrics


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", action="append", help="model.kind to run (repeatable); default: the preset's")
    parser.add_argument("--set", action="append", default=[], dest="overrides", help="extra config key=value")
    parser.add_argument("--preset", default="default")
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"sentiment-analysis bench: preset {args.preset}, CPU, backend "
          f"{os.environ.get('KERAS_BACKEND', 'tensorflow')}, {os.cpu_count()} cores, load average at start {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}")
    results = []
    for kind in args.kind or [None]:
        splits, data_line = describe(args.preset, kind, args.overrides)
        digest = splits.info.digest
        m = run(args.preset, kind, args.overrides)
        if m["digest"] != digest:
            sys.exit(f"the run logged data digest {m['digest']}, not {digest} as described above")
        results.append((kind or "default (ngram)", m))
        print(f"  {kind or 'default'}: split train/val/test {m['sizes']}, digest {m['digest']}; "
              f"{int(m['epochs'])} epochs, fit {m['fit_seconds']:.0f} s (wall {m['wall_seconds']:.0f} s)", flush=True)
    print(f"\n{'model':<48} {'test accuracy':>13} {'ROC-AUC':>8} {'F1':>7}")
    for name, acc in REFERENCES:
        print(f"{name:<48} {acc:>13.1%} {'':>8} {'':>7}")
    for name, m in results:
        print(f"{'ours: ' + name:<48} {m['test_accuracy']:>13.1%} {m['test_roc_auc']:>8.3f} {m['test_f1']:>7.3f}")
    from deepsuite.pipelines.sentiment_analysis.data import texts_of

    peer_accuracy, peer_seconds = nbsvm_accuracy(texts_of(splits.train), splits.train.y, texts_of(splits.test),
                                                 splits.test.y)
    name, m = results[0]
    result = BenchResult(
        "sentiment_analysis", "python bench/sentiment_analysis.py", "test accuracy", True,
        Figure(f"{name} n-gram network", m["test_accuracy"], m["fit_seconds"]),
        [Figure("NBSVM-bi (Wang & Manning 2012), scikit-learn, paper's settings", peer_accuracy, peer_seconds,
                "trained on our training split, scored on our test split")],
        int(data_line.split()[1]), data_line.split(" | ", 1)[1],
        "recipe chosen on validation over three sweeps (test scored after two)")
    print()
    print("\n".join(ratio_lines(result)))
    best = max(m["test_accuracy"] for _, m in results)
    fit = max(m["fit_seconds"] for _, m in results)
    print(f"\ntarget: test accuracy >= {TARGET:.0%} with no pretrained embeddings, <= {TARGET_FIT_S // 60} min "
          f"training: {verdict(best >= TARGET and fit <= TARGET_FIT_S)} (best {best:.1%}, longest fit "
          f"{fit / 60:.1f} min; load average now {os.getloadavg()[0]:.1f})")
    result.targets = [f"test accuracy >= 80%: {'met' if best >= TARGET else 'NOT met'}"]
    if args.preset == "default" and not args.kind and not args.overrides:
        print(f"recorded in {save(result)}")
    return finish(args.preset)


if __name__ == "__main__":
    sys.exit(main())
