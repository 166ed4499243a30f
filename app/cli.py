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

from deepsuite.common.errors import DeepsuiteError
from deepsuite.common.redaction import redact

EPILOG = """examples:
  deepsuite list
  deepsuite run image-classification
  deepsuite run image-classification --preset smoke --set train.epochs=2 --set model.dropout=0.3
  deepsuite run image-classification --config my.yaml
  deepsuite predict <run id | model folder | model.keras> shirt.png
  deepsuite tune image-classification --tuner hyperband --max-epochs 20   # again after a crash: resumes
  deepsuite predict models:/image-classification@best shirt.png
  deepsuite ui                                   # MLflow UI on ./mlruns at http://127.0.0.1:5000
  deepsuite compare image-classification --last 5
  deepsuite serve <run id | models:/name@alias> --port 5001
  MLFLOW_BACKEND_STORE_URI=postgresql://mlflow:PASS@localhost/mlflow deepsuite server --artifacts-destination /srv/mlartifacts
"""


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
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
    run.add_argument("--resume", metavar="RUN_ID", help="continue an interrupted run from its last finished epoch, "
                                                      "with its saved config; 'last' picks the newest one")
    run.add_argument("--show-config", action="store_true", help="print the resolved config and exit")
    hosts = run.add_argument_group("several JAX processes (hosts); default: KERAS_DISTRIBUTION_JOB_ADDRESSES, "
                                   "KERAS_DISTRIBUTION_NUM_PROCESSES, KERAS_DISTRIBUTION_PROCESS_ID")
    hosts.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address, the same for every process")
    hosts.add_argument("--num-processes", type=int, metavar="N", help="how many processes train together")
    hosts.add_argument("--process-id", type=int, metavar="I", help="this process, 0..N-1; 0 records the run")
    run.set_defaults(handler=cmd_run)

    _add_results_commands(sub)
    if _may_be_inference(sys.argv[1:] if argv is None else argv):
        _add_inference_commands(sub)  # loads every installed pipeline: only when the line may need them

    tune = sub.add_parser(
        "tune", help="Keras Tuner hyperparameter search; each trial an MLflow run, the best model registered",
        description="Search a pipeline's hyperparameters (its search_space) with Keras Tuner. One MLflow parent "
                    "run per search, one child run per trial; the best model is registered as "
                    "models:/<pipeline>@best. Re-running the same command continues an interrupted search.")
    tune.add_argument("pipeline", help="pipeline name (see `deepsuite list`)")
    tune.add_argument("--tuner", default="hyperband", help="random, bayesian or hyperband (default hyperband)")
    tune.add_argument("--objective", help="metric to optimise, e.g. val_auc (default: the pipeline's monitor)")
    tune.add_argument("--direction", help="min or max (default: the pipeline's, else inferred from the name)")
    tune.add_argument("--max-trials", type=int, help="trials to run (default 10; hyperband: a cap on its brackets)")
    tune.add_argument("--max-epochs", type=int, help="epochs per trial (hyperband: the most); default: preset's")
    tune.add_argument("--factor", type=int, default=3, help="hyperband reduction factor (default 3)")
    tune.add_argument("--fix", dest="fixes", metavar="NAME=VALUE", action="append", default=[],
                      help="pin one hyperparameter of the space (repeatable)")
    tune.add_argument("--tune-precision", action="store_true",
                      help="also search train.mixed_precision (worth it on GPUs)")
    tune.add_argument("--name", help="search name (default: derived from the arguments, so re-runs resume)")
    tune.add_argument("--max-failures", type=int, default=3, help="stop after this many failed trials in a row")
    tune.add_argument("--alias", default="best", help="registry alias for the best model (default best)")
    _add_config_args(tune)
    _add_store_args(tune)
    tune.add_argument("--distributed", choices=["chief", "worker"],
                      help="Keras Tuner chief/worker mode; with DEEPSUITE_TUNE_TOKEN set (the same on all), the chief "
                           "answers only callers that send it")
    tune.add_argument("--port", type=int, help="chief: port to serve the oracle on (default 8000; with --workers a "
                                               "free one)")
    tune.add_argument("--host", default="127.0.0.1", help="chief: address to bind (default 127.0.0.1, this machine "
                                                         "only; 0.0.0.0 for workers on other machines)")
    tune.add_argument("--chief", metavar="HOST:PORT", help="worker: the chief's address")
    tune.add_argument("--worker-id", help="worker: stable id (default worker-<host>-<pid>)")
    tune.add_argument("--connect-timeout", type=float, default=60.0,
                      help="worker: seconds to keep retrying an unreachable chief (default 60)")
    tune.add_argument("--workers", metavar="N|per-device",
                      help="start the chief and N workers on this machine (loopback, a fresh token), each worker "
                           "on its own GPU(s) when there are GPUs; per-device: one worker per GPU. Ctrl-C stops all")
    tune.set_defaults(handler=cmd_tune, tune_parser=tune)
    return parser


MODEL_HELP = ("MLflow run id, runs:/<id>, models:/<name>@<alias>, a model folder (export/) or a .keras file; "
              "its pipeline decides which options below apply")
BUILT_IN = {"list", "run", "tune", "ui", "compare", "serve", "server"}


def _may_be_inference(argv: list[str]) -> bool:
    """False when the first word is a built-in command (`run`, `list`, ...), which needs no pipeline's verbs."""
    words = [a for a in argv if not a.startswith("-")]
    return not words or words[0] not in BUILT_IN


def _add_inference_commands(sub) -> None:
    """One sub-command per verb the installed pipelines declare (predict, generate, ...).

    Only the verb, the model and the store are parsed here; the rest of the line is parsed by the
    options of the command the model's pipeline declares (`cmd_invoke`), so two pipelines may give the
    same verb different flags. `--help` lists each pipeline's flags.
    """
    from deepsuite.app.cli_options import declared_commands, describe_options

    for verb, declared in sorted(declared_commands().items()):
        if verb in BUILT_IN:
            print(f"warning: pipeline {declared[0][0]!r} declares a command {verb!r}, which is a built-in "
                  "deepsuite command; it is ignored", file=sys.stderr)
            continue
        helps = list(dict.fromkeys(command.help for _, command in declared))
        parser = sub.add_parser(verb, help="; ".join(helps), allow_abbrev=False,
                                description=f"deepsuite {verb} MODEL ...: " + "; ".join(helps),
                                epilog=describe_options(verb, declared),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("model", help=MODEL_HELP)
        parser.add_argument("--json", action="store_true", help="print one JSON object per answer")
        _add_store_args(parser)
        parser.set_defaults(handler=cmd_invoke, command_name=verb)


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


def _add_results_commands(sub) -> None:
    """ui, compare, serve, server: looking at runs, serving models, sharing a tracking server."""
    ui = sub.add_parser("ui", help="MLflow's UI on the suite's store (loopback by default; Ctrl-C stops it)")
    ui.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine)")
    ui.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    ui.add_argument("--store", type=Path, help="store folder holding mlflow.db (default: $MLFLOW_TRACKING_URI when it "
                                           "is a database, else mlruns)")
    ui.add_argument("--tracking-uri", help="the store `deepsuite run --tracking-uri` wrote to: a database URI is "
                                           "served; an http(s) URI is a server with its own UI")
    ui.add_argument("--backend-store-uri", help="a database URI instead of --store, e.g. sqlite:///other/mlflow.db")
    ui.add_argument("--artifacts-destination", help="artifact folder for runs created from the UI "
                                                   "(default <store>/artifacts)")
    ui.add_argument("--workers", type=int, default=1, help="server worker processes (default 1)")
    ui.set_defaults(handler=cmd_ui)

    compare = sub.add_parser("compare", help="terminal table of a pipeline's last runs: differing params, "
                                             "metrics, duration, UI links")
    compare.add_argument("pipeline", help="pipeline (experiment) name, e.g. image-classification")
    compare.add_argument("--last", type=int, default=5, help="how many recent runs (default 5)")
    compare.add_argument("--ui-url", help="base URL of the MLflow UI for links (default: the tracking server, "
                                          "else http://127.0.0.1:5000 as `deepsuite ui` starts it)")
    _add_store_args(compare)
    compare.set_defaults(handler=cmd_compare)

    serve = sub.add_parser("serve", help="REST scoring server on raw inputs: POST JSON to /invocations",
                           description="Serve a trained model: POST /invocations with a JSON object of the options of the "
                                       "model's command (those `deepsuite <command> --help` lists), e.g. "
                                       '{"inputs": [...]} or {"prompt": "...", "max_tokens": 50}; '
                                       '"command" picks one when the pipeline declares several. See app/serve.py.')
    serve.add_argument("model", help="MLflow run id, runs:/<id>, models:/<name>@<alias> or an export/ folder")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=5001, help="port (default 5001)")
    serve.add_argument("--allowed-hosts", help="Host headers to accept besides the bind address, comma-separated "
                                               "(on loopback: this machine's names only; guards against DNS "
                                               "rebinding from a browser)")
    serve.add_argument("--request-timeout", type=float, default=30.0,
                       help="seconds a client may stay silent before it is dropped (default 30)")
    _add_store_args(serve)
    serve.set_defaults(handler=cmd_serve)

    server = sub.add_parser("server", help="shared MLflow tracking server on a database (PostgreSQL) for a team")
    server.add_argument("--backend-store-uri", default=os.environ.get("MLFLOW_BACKEND_STORE_URI"),
                        help="database URI, e.g. postgresql://mlflow:PASSWORD@localhost:5432/mlflow; better in the "
                             "environment as MLFLOW_BACKEND_STORE_URI (the default), where `ps` does not show it")
    server.add_argument("--artifacts-destination", default="mlartifacts",
                        help="where the server keeps artifacts: a folder or s3://... (default ./mlartifacts)")
    server.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for the team)")
    server.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    server.add_argument("--workers", type=int, default=4, help="server worker processes (default 4)")
    server.add_argument("--allowed-hosts", help="Host headers to accept when exposed, e.g. mlflow.example.com")
    server.add_argument("--auth", action="store_true",
                        help="MLflow's basic-auth app: every client needs a user and password (needs "
                             "MLFLOW_FLASK_SERVER_SECRET_KEY, and MLFLOW_AUTH_ADMIN_PASSWORD on the first start)")
    server.set_defaults(handler=cmd_server)


def cmd_ui(args) -> int:
    from deepsuite.app.ui import start_ui

    return start_ui(args.store, args.host, args.port, args.backend_store_uri or args.tracking_uri,
                    args.artifacts_destination, args.workers)


def cmd_compare(args) -> int:
    from deepsuite.app.compare import compare

    return compare(args.pipeline, args.last, args.tracking_uri, args.store, args.ui_url)


def cmd_serve(args) -> int:
    from deepsuite.app.serve import serve

    return serve(args.model, args.host, args.port, args.tracking_uri, args.store, extra_hosts=args.allowed_hosts,
                 timeout=args.request_timeout)


def cmd_server(args) -> int:
    from deepsuite.app.team_server import start_server

    if not args.backend_store_uri:
        raise DeepsuiteError("say which database: export MLFLOW_BACKEND_STORE_URI=postgresql://USER:PASSWORD@HOST/DB "
                             "(or --backend-store-uri, which `ps` shows to every user of the machine)")
    return start_server(args.backend_store_uri, args.artifacts_destination, args.host, args.port, args.workers,
                        args.allowed_hosts, auth=args.auth)


def cmd_list(args) -> int:
    from deepsuite.app import registry

    for name in registry.names():
        try:
            pipeline = registry.get(name)
        except DeepsuiteError as exc:
            print(f"{name}\n  (cannot be loaded: {exc})")
            continue
        commands = ", ".join(command.name for command in pipeline.commands) or "none"
        print(f"{name}\n  {pipeline.description}\n  presets: {', '.join(pipeline.presets)}\n"
              f"  default data: {pipeline.default_dataset}\n  commands: {commands}")
    return 0


def cmd_run(args) -> int:
    from deepsuite.common import config as config_lib
    from deepsuite.app import registry

    pipeline = registry.get(args.pipeline)
    config = config_lib.resolve(pipeline.config_cls, pipeline.presets, args.preset, args.config, args.overrides)
    if args.show_config:
        print(config_lib.to_yaml(config), end="")
        return 0
    from deepsuite.common import distribution, runner

    distribution.initialize_processes(args.coordinator, args.num_processes, args.process_id)
    resume = args.resume
    if resume == "last":
        resume = runner.find_last_unfinished(pipeline, config, args.tracking_uri, args.store)
    result = runner.run(pipeline, config, tracking_uri=args.tracking_uri, store_dir=args.store,
                        resume_run_id=resume)
    if not result.run_id:  # a multi-process run's process 1, 2, ...: process 0 prints the run
        print(f"done: {pipeline.name} {result.run_name} (process 0 recorded the run)")
        return 0
    metrics = "  ".join(f"{k}={v:.4f}" for k, v in result.metrics.items())
    print(f"done: {pipeline.name} run {result.run_name} ({result.run_id})\n  {metrics}\n"
          f"  model: {result.model_path}\n  report: {result.report_path}")
    return 0


def cmd_invoke(args, rest: list[str]) -> int:
    """predict / generate / ...: load the model, then parse the rest of the line by its pipeline's options."""
    from deepsuite.app import invoke
    from deepsuite.app.cli_options import options_parser

    loaded = invoke.load(args.model, args.tracking_uri, args.store)
    command = loaded.pipeline.command(args.command_name)
    parser = options_parser(command, prog=f"deepsuite {command.name} MODEL")
    values = vars(parser.parse_args(rest))
    results = loaded.run(command, command.validate(values, name_of=invoke.cli_name))
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
    if args.workers is not None:
        return _tune_fleet(args)
    from deepsuite.tuning.search import SearchOptions, run_search

    if args.port is None:
        args.port = 8000
    if args.distributed == "chief":  # before any run starts: a busy port is one line, not a FAILED search
        from deepsuite.app.ports import ensure_port_free, exposure_warning

        ensure_port_free(args.host, args.port, "the chief")
        from deepsuite.tuning.distributed import TOKEN_ENV, token

        warning = None if token() else exposure_warning(args.host, "the tuning chief", "can join the search or "
                                                        f"stop it (no authentication: set {TOKEN_ENV})")
        if warning:
            print(warning.strip(), file=sys.stderr)
    from deepsuite.app import registry

    run_search(SearchOptions.from_namespace(args), pipeline=registry.get(args.pipeline))
    return 0


def _tune_fleet(args) -> int:
    """`tune --workers N|per-device`: this process supervises a chief and N workers (app/fleet.py)."""
    from deepsuite.app.fleet import forwarded_args, parse_workers, run_fleet
    from deepsuite.app.ports import ensure_port_free, is_loopback
    from deepsuite.common.errors import ConfigError

    workers = parse_workers(args.workers)
    for flag, given in (("--distributed", args.distributed), ("--chief", args.chief), ("--worker-id", args.worker_id)):
        if given:
            raise ConfigError(f"--workers starts its own chief and workers on this machine; drop {flag} (chief and "
                              "workers on several machines: --distributed chief|worker, without --workers)")
    if not is_loopback(args.host):
        raise ConfigError(f"--workers keeps the chief on this machine (127.0.0.1); drop --host {args.host} (workers "
                          "on other machines: --distributed chief --host ... and --distributed worker there)")
    if args.port is not None:
        ensure_port_free("127.0.0.1", args.port, "the chief")
    return run_fleet(forwarded_args(args.tune_parser, args), workers, args.debug, args.port)


def _exit_after_interrupted_training(code: int) -> None:
    """Leave at once once the run is recorded as KILLED: the backend's worker threads may still be inside
    the interrupted step, and tearing the interpreter down around them crashed the process (SIGSEGV instead
    of exit 130; seen once in a full test run under load). Exit handlers (MLflow's, the stderr filter's
    drain) still run first."""
    import atexit

    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(argv)
    args, rest = parser.parse_known_args(argv)
    if rest and args.handler is not cmd_invoke:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if not args.debug:
        from deepsuite.app.console import filter_native_logs

        filter_native_logs()
    try:
        return args.handler(args, rest) if args.handler is cmd_invoke else args.handler(args)
    except DeepsuiteError as exc:
        if args.debug:
            raise
        print(f"error: {redact(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        if args.handler in (cmd_run, cmd_tune):
            _exit_after_interrupted_training(130)
        return 130
    except Exception as exc:  # noqa: BLE001 - last resort: one line, traceback on --debug
        if args.debug:
            raise
        print(f"error: {type(exc).__name__}: {redact(exc)} (run with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
