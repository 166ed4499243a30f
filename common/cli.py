"""The `deepsuite` command: the only argument parsing in the suite.

Sub-commands import their heavy dependencies (Keras, TensorFlow, MLflow) only when they run, so
`deepsuite --help` answers at once. User errors print one line and exit 2; `--debug` shows tracebacks.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from common.errors import DeepsuiteError

EPILOG = """examples:
  deepsuite list
  deepsuite run image-classification
  deepsuite run image-classification --preset smoke --set train.epochs=2 --set model.dropout=0.3
  deepsuite run image-classification --config my.yaml
  deepsuite predict <run id | model folder | model.keras> shirt.png
  mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepsuite", description="Keras 3 deep-learning pipelines with Keras Tuner and MLflow tracking.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    sub.add_parser("list", help="pipelines, their presets and default datasets").set_defaults(handler=cmd_list)

    run = sub.add_parser("run", help="train, evaluate, report and export one pipeline, logged to MLflow",
                         description="Run a pipeline end to end: data -> model -> fit -> evaluate -> report -> "
                                     "export, all recorded as one MLflow run.")
    run.add_argument("pipeline", help="pipeline name (see `deepsuite list`)")
    _add_config_args(run)
    _add_store_args(run)
    run.add_argument("--resume", metavar="RUN_ID", help="continue an interrupted run from its last finished epoch")
    run.add_argument("--show-config", action="store_true", help="print the resolved config and exit")
    run.set_defaults(handler=cmd_run)

    predict = sub.add_parser("predict", help="predict with a trained model on raw inputs (files or strings)")
    predict.add_argument("model", help="MLflow run id, runs:/<id>, a model folder (export/) or a .keras file")
    predict.add_argument("inputs", nargs="+", help="inputs: image files for image pipelines")
    predict.add_argument("--top", type=int, default=3, help="how many classes to show (default 3)")
    predict.add_argument("--json", action="store_true", help="print one JSON object per input")
    _add_store_args(predict)
    predict.set_defaults(handler=cmd_predict)

    tune = sub.add_parser("tune", help="Keras Tuner hyperparameter search (not available yet)")
    tune.add_argument("pipeline")
    tune.set_defaults(handler=cmd_tune)
    return parser


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", help="named preset: smoke (tests), default (CPU), full (GPU)")
    parser.add_argument("--config", metavar="YAML", help="YAML file of config values (applied after the preset)")
    parser.add_argument("--set", dest="overrides", metavar="KEY=VALUE", action="append", default=[],
                        help="override one value, e.g. --set train.epochs=5 (repeatable, applied last)")


def _add_store_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, "
                                               "else sqlite:///mlruns/mlflow.db)")
    parser.add_argument("--store", default="mlruns", type=Path,
                        help="local store folder for the sqlite database, artifacts and run work files")


# ------------------------------------------------------------------------------------------------


def cmd_list(args) -> int:
    from common import registry

    for name in registry.names():
        pipeline = registry.get(name)
        print(f"{name}\n  {pipeline.description}\n  presets: {', '.join(pipeline.presets)}\n"
              f"  default data: {pipeline.default_dataset}")
    return 0


def cmd_run(args) -> int:
    from common import config as config_lib
    from common import registry

    pipeline = registry.get(args.pipeline)
    config = config_lib.resolve(pipeline.config_cls, pipeline.presets, args.preset, args.config, args.overrides)
    if args.show_config:
        print(config_lib.to_yaml(config), end="")
        return 0
    from common import runner

    result = runner.run(pipeline, config, tracking_uri=args.tracking_uri, store_dir=args.store,
                        resume_run_id=args.resume)
    metrics = "  ".join(f"{k}={v:.4f}" for k, v in result.metrics.items())
    print(f"done: {pipeline.name} run {result.run_name} ({result.run_id})\n  {metrics}\n"
          f"  model: {result.model_path}\n  report: {result.report_path}")
    return 0


def cmd_predict(args) -> int:
    from common import predict

    results = predict.predict(args.model, args.inputs, {"top": args.top}, args.tracking_uri, args.store)
    for result in results:
        if args.json:
            print(json.dumps(result))
        else:
            extra = ", ".join(f"{k} {v:.3f}" for k, v in result.get("top", {}).items())
            print(f"{result['input']}: {result['label']} ({result['probability']:.3f})" + (f"  [{extra}]" if extra else ""))
    return 0


def cmd_tune(args) -> int:
    raise DeepsuiteError("`deepsuite tune` is not implemented yet (see the hyperparameter-search issue)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        return args.handler(args)
    except DeepsuiteError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - last resort: one line, traceback on --debug
        if args.debug:
            raise
        print(f"error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
