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
    predict.add_argument("--output", "-o", type=Path, help="where to write images the pipeline draws "
                                                          "(e.g. Grad-CAM overlays)")
    predict.add_argument("--json", action="store_true", help="print one JSON object per input")
    _add_store_args(predict)
    predict.set_defaults(handler=cmd_invoke, command_name="predict")

    generate = sub.add_parser("generate", help="generate text with a text-generation model")
    generate.add_argument("model", help="MLflow run id, runs:/<id>, a model folder or a .keras file")
    generate.add_argument("--prompt", default="", help="text to continue")
    generate.add_argument("--max-tokens", type=int, default=300, help="tokens to generate (default 300)")
    generate.add_argument("--temperature", type=float, default=1.0, help="0 = greedy; higher = more random")
    generate.add_argument("--top-k", type=int, default=None, help="sample among the k most likely tokens")
    generate.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass, in (0, 1]")
    generate.add_argument("--seed", type=int, default=None, help="random seed for reproducible samples")
    generate.add_argument("--stop", default=None, help="stop when this string is generated")
    generate.add_argument("--json", action="store_true")
    _add_store_args(generate)
    generate.set_defaults(handler=cmd_invoke, command_name="generate")

    recommend = sub.add_parser("recommend", help="top-N recommendations for a user from a recommendation model")
    recommend.add_argument("model", help="MLflow run id, runs:/<id>, a model folder or a .keras file")
    recommend.add_argument("--user", required=True, help="user id as in the ratings data")
    recommend.add_argument("--top", type=int, default=10, help="how many items (default 10)")
    recommend.add_argument("--json", action="store_true")
    _add_store_args(recommend)
    recommend.set_defaults(handler=cmd_invoke, command_name="recommend")

    denoise = sub.add_parser("denoise", help="denoise images of any size with an image-denoising model")
    denoise.add_argument("model", help="MLflow run id, runs:/<id>, a model folder or a .keras file")
    denoise.add_argument("inputs", nargs="+", help="noisy image files")
    denoise.add_argument("--output", "-o", type=Path, help="output file (one input) or folder")
    denoise.add_argument("--tile", type=int, default=256, help="tile size for large images (default 256)")
    denoise.add_argument("--overlap", type=int, default=32, help="tile overlap in pixels (default 32)")
    denoise.add_argument("--json", action="store_true")
    _add_store_args(denoise)
    denoise.set_defaults(handler=cmd_invoke, command_name="denoise")

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


def cmd_invoke(args) -> int:
    """predict / generate / recommend / denoise: load the exported model and ask its pipeline."""
    from common import predict

    skip = {"handler", "command_name", "command", "model", "tracking_uri", "store", "debug", "json"}
    options = {k: v for k, v in vars(args).items() if k not in skip}
    results = predict.invoke(args.command_name, args.model, options, args.tracking_uri, args.store)
    for result in results:
        print(json.dumps(result, default=str) if args.json else format_result(result))
    return 0


def format_result(result: dict) -> str:
    if "summary" in result:
        return str(result["summary"])
    if {"input", "label", "probability"} <= result.keys():
        extra = ", ".join(f"{k} {v:.3f}" for k, v in result.get("top", {}).items())
        return f"{result['input']}: {result['label']} ({result['probability']:.3f})" + (f"  [{extra}]" if extra else "")
    return json.dumps(result, default=str)


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
