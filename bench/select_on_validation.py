"""Choose between named recipe finalists on the validation split only; the test split is never scored.

    nice -n 5 .venv/bin/python bench/select_on_validation.py medical-imaging --metric log_loss \
        --candidate "default" \
        --candidate "28px-3stage; model.min_input_side=null; model.widths=[24,48,96]" \
        --set data.source=medmnist:../shared/data/pneumoniamnist.npz [--seeds 42,2]

Why: a recipe picked on test figures and then scored on the same test images reports an optimistic
figure. Here every finalist trains through the suite's own runner on the training split, and the
pipeline's evaluation runs with the validation split in the test split's place, so each printed figure
is a validation figure. Name the finalists before running; then measure only the winner on test once,
with the pipeline's bench.

Each candidate is "NAME; key=value; key=value" (`--set` syntax, applied after the shared `--set`s).
The winner is the best mean of `--metric` over `--seeds`; `--direction` says whether lower is better
(default: min for names containing loss/rmse/error, else max).

`--metric` is either a figure of the pipeline's evaluation (computed on validation, as above), or a
Keras validation metric of the training history such as `val_rmse`: that one is read at the epoch whose
weights the model ends with (the best `monitor` epoch when early stopping restores it, else the last),
and the evaluation is skipped altogether. Recommendation's rankings read its catalogue, whose validation
ratings move into the test place too (and are then not trained on): `--metric ndcg_at_10` with
`--set data.split=temporal` is leave-one-out one step before each user's test rating.

`--selection-set configured` scores the pipeline's test split as the `--set`s configure it, for a
pipeline whose bench measures on a different held-out set: image denoising selects on held-out
scikit-image photographs (`data.test_folder` set to them) while its bench scores Set12.
"""
from __future__ import annotations

import dataclasses
import json
import statistics
import sys
import tempfile
from pathlib import Path

from harness import parser, watch_data  # noqa: E402  (importing harness puts the repo on sys.path)

from deepsuite.common import config as config_lib  # noqa: E402
from deepsuite.app import registry  # noqa: E402
from deepsuite.common import runner  # noqa: E402
from deepsuite.common.pipeline import Evaluation  # noqa: E402


class ValidationAsTest:
    """The pipeline with its test split replaced by validation, so selection cannot look at test;
    with `evaluate=False` it does not evaluate at all (the figure then comes from the training history)."""

    def __init__(self, pipeline, evaluate: bool = True, swap: bool = True):
        self._pipeline = pipeline
        self._evaluate = evaluate
        self._swap = swap

    def __getattr__(self, name):
        return getattr(self._pipeline, name)

    def load_data(self, config):
        splits = self._pipeline.load_data(config)
        return validation_in_test_place(splits) if self._swap else splits

    def evaluate(self, model, splits, config):
        return self._pipeline.evaluate(model, splits, config) if self._evaluate else Evaluation({})


def validation_in_test_place(splits):
    """The splits with validation where test was. Recommendation ranks against its catalogue's splits rather
    than `splits.test`, so there the catalogue moves too: its validation ratings become the ones to find and
    its validation part is emptied, so nothing is trained on them (the two-tower otherwise fits train +
    validation) and rankings exclude only what the model was trained on. On a leave-last-out split that is
    leave-one-out one step earlier in each user's history; the real test ratings stay unseen candidates."""
    swapped = dataclasses.replace(splits, test=splits.val)
    catalogue = getattr(splits, "catalogue", None)
    if catalogue is not None:
        emptied = dataclasses.replace(catalogue.val, **{f.name: getattr(catalogue.val, f.name)[:0]
                                                        for f in dataclasses.fields(catalogue.val)})
        swapped = dataclasses.replace(swapped, catalogue=dataclasses.replace(catalogue, test=catalogue.val,
                                                                             val=emptied))
    return swapped


def final_weights_epoch(history: dict[str, list[float]], monitor: str, mode: str, early_stopping: bool) -> int:
    """The epoch whose weights the model ends with: EarlyStopping(restore_best_weights=True) restores
    the best monitored epoch at the end of training; without it the last epoch's weights stay."""
    values = history.get(monitor)
    if not early_stopping or not values:
        return len(history["loss"]) - 1
    best = min(values) if mode == "min" else max(values)
    return values.index(best)


def parse_candidate(text: str) -> tuple[str, list[str]]:
    name, *assignments = [part.strip() for part in text.split(";")]
    if not name:
        raise SystemExit(f"candidate {text!r} has no name (format: 'NAME; key=value; ...')")
    return name, [a for a in assignments if a]


def lower_is_better(metric: str, direction: str | None) -> bool:
    if direction:
        return direction == "min"
    return any(word in metric for word in ("loss", "rmse", "error", "mae"))


def main() -> int:
    args_parser = parser(__doc__)
    args_parser.add_argument("pipeline")
    args_parser.add_argument("--candidate", action="append", required=True, metavar="'NAME; key=value; ...'")
    args_parser.add_argument("--metric", required=True, help="a metric name of the pipeline's evaluation")
    args_parser.add_argument("--direction", choices=["min", "max"])
    args_parser.add_argument("--seeds", default="42", help="comma-separated seeds (default 42)")
    args_parser.add_argument("--selection-set", choices=["validation", "configured"], default="validation",
                             help="validation (default), or the test split as the --sets configure it")
    args_parser.add_argument("--json", type=Path, help="also write the table as JSON here")
    # Not the benches' store: selection runs log validation figures under the pipeline's test_* names, which
    # must not sit beside real bench runs; a temporary store unless --store is given.
    args_parser.set_defaults(store=None)
    for action in args_parser._actions:
        if action.dest == "store":
            action.help = "MLflow store folder (default: a new temporary folder)"
    args = args_parser.parse_args()

    from_history = args.metric.startswith("val_")
    # watch_data prints the seed, split sizes and test digest of the data as loaded (before any swap)
    pipeline = ValidationAsTest(watch_data(registry.get(args.pipeline)), evaluate=not from_history,
                                swap=args.selection_set == "validation")
    seeds = [int(s) for s in args.seeds.split(",")]
    candidates = [parse_candidate(c) for c in args.candidate]
    lower = lower_is_better(args.metric, args.direction)
    store = Path(tempfile.mkdtemp(prefix="select-")) if args.store is None else args.store
    where = ("the validation split; the test split is not scored" if args.selection_set == "validation"
             else "the test split as configured by the --sets (a held-out selection set, not the bench's test)")
    print(f"selecting {args.pipeline} ({args.preset} preset) on {args.metric} over {where}; "
          f"{'lower' if lower else 'higher'} is better; seeds {seeds}")
    table: dict[str, list[dict[str, float]]] = {}
    for name, assignments in candidates:
        for seed in seeds:
            config = config_lib.resolve(pipeline.config_cls, pipeline.presets, args.preset, None,
                                        ["train.verbose=0", "tracking.log_model=false", *args.overrides, *assignments, f"seed={seed}"])
            result = runner.run(pipeline, config, store_dir=store, echo=lambda line: None)
            figures = {k.removeprefix("test_"): v for k, v in result.metrics.items()}
            if from_history:
                at = final_weights_epoch(result.history, pipeline.monitor, pipeline.monitor_mode,
                                         bool(config.train.early_stopping_patience))
                figures = {k: v[at] for k, v in result.history.items() if k.startswith("val_")}
            if args.metric not in figures:
                raise SystemExit(f"metric {args.metric!r} is not among {sorted(figures)}")
            table.setdefault(name, []).append({"seed": seed, **figures})
            print(f"  {name:<24} seed {seed:<4} validation {args.metric} {figures[args.metric]:.4f}  "
                  f"({len(result.history.get('loss', []))} epochs)", flush=True)
    means = {name: statistics.fmean(r[args.metric] for r in rows) for name, rows in table.items()}
    winner = (min if lower else max)(means, key=means.get)
    print(f"\nvalidation {args.metric}, mean over seeds {seeds}:")
    for name, value in sorted(means.items(), key=lambda item: item[1], reverse=not lower):
        print(f"  {name:<24} {value:.4f}{'   <- chosen' if name == winner else ''}")
    if args.json:
        args.json.write_text(json.dumps({"metric": args.metric, "seeds": seeds, "winner": winner,
                                         "means": means, "runs": table}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
