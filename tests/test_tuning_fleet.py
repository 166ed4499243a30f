"""`deepsuite tune --workers N|per-device` without training: its argument errors, device plan and forwarded
command line. The fleet itself (a chief and two workers, Ctrl-C) runs in tests/test_tuning_slow.py."""
from __future__ import annotations

import dataclasses

import pytest

from deepsuite.app.cli import build_parser
from deepsuite.app.fleet import FLEET_OWNS, forwarded_args
from deepsuite.app.fleet import assign, parse_workers, visible_gpus
from deepsuite.tuning.session import SearchOptions
from tests.support.cli import run_in_process

SEARCH = ["tune", "image-classification", "--tuner", "random", "--max-trials", "2", "--max-epochs", "1",
          "--preset", "smoke"]


@pytest.mark.parametrize("extra, message", [
    (["--workers", "0"], "error: --workers '0': expected a number of workers (1 or more) or per-device"),
    (["--workers", "-2"], "error: --workers '-2': expected a number of workers (1 or more) or per-device"),
    (["--workers", "all"], "error: --workers 'all': expected a number of workers (1 or more) or per-device"),
    (["--workers", "2", "--distributed", "chief"],
     "error: --workers starts its own chief and workers on this machine; drop --distributed (chief and workers "
     "on several machines: --distributed chief|worker, without --workers)"),
    (["--workers", "2", "--distributed", "worker", "--chief", "127.0.0.1:8000"],
     "error: --workers starts its own chief and workers on this machine; drop --distributed"),
    (["--workers", "per-device", "--worker-id", "w1"], "drop --worker-id"),
    (["--workers", "2", "--host", "0.0.0.0"], "error: --workers keeps the chief on this machine (127.0.0.1); drop "
                                             "--host 0.0.0.0"),
])
def test_workers_argument_errors_are_one_line_and_start_nothing(tmp_path, monkeypatch, capsys, extra, message):
    result = run_in_process([*SEARCH, *extra], tmp_path, monkeypatch, capsys)
    assert result.code == 2, result
    [line] = result.err.strip().splitlines()
    assert message in line, line
    assert "fleet:" not in result.out and not (tmp_path / "mlruns").exists()  # no chief, no run


def test_busy_port_for_the_fleet_chief_is_refused(tmp_path, monkeypatch, capsys):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_in_process([*SEARCH, "--workers", "2", "--port", str(port)], tmp_path, monkeypatch, capsys)
    assert result.code == 2 and f"port {port} on 127.0.0.1 is already in use" in result.err


def test_parse_workers():
    assert parse_workers("3") == 3 and parse_workers("per-device") is None


def test_each_worker_gets_its_own_gpus():
    assert assign(2, []) == [[], []]                      # CPU: nothing pinned
    assert assign(None, []) == [[]]                       # per-device on a CPU-only machine: one worker
    assert assign(None, ["0", "1", "2"]) == [["0"], ["1"], ["2"]]
    assert assign(2, ["0", "1", "2", "3"]) == [["0", "1"], ["2", "3"]]   # fewer workers: GPUs split in groups
    assert assign(2, ["0", "1", "2"]) == [["0", "1"], ["2"]]
    assert assign(3, ["4", "6"]) == [["4"], ["6"], ["4"]]                # more workers: shared round-robin


def test_visible_gpus_follow_cuda_visible_devices():
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}) == (["2", "3"], False)
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == ([], False)
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == ([], False)
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "1,-1,2"}) == (["1"], False)  # CUDA stops at an invalid id


def options_of(argv):
    args = build_parser(argv).parse_args(argv)
    return {k: v for k, v in dataclasses.asdict(SearchOptions.from_namespace(args)).items() if k not in FLEET_OWNS}


def test_chief_and_workers_get_the_arguments_that_name_the_same_search():
    given = ["tune", "text-generation", "--tuner", "bayesian", "--max-trials", "5", "--objective", "val_loss",
             "--fix", "model.num_layers=2", "--set", "train.epochs=3", "--set", "data.max_chars=5000",
             "--tune-precision", "--store", "elsewhere", "--name", "s1", "--connect-timeout", "9", "--workers", "2"]
    args = build_parser(given).parse_args(given)
    forwarded = forwarded_args(args.tune_parser, args)
    assert "--workers" not in forwarded and "--connect-timeout" not in forwarded
    assert forwarded[:1] == ["text-generation"] and forwarded.count("--set") == 2
    assert options_of(["tune", *forwarded, "--distributed", "worker", "--chief", "127.0.0.1:1"]) == options_of(given)
    bare = build_parser().parse_args(["tune", "image-classification", "--workers", "1"])
    assert forwarded_args(bare.tune_parser, bare) == ["image-classification"]  # defaults are not repeated


def test_a_chief_that_fails_is_shown_prefixed_and_no_worker_starts(tmp_path):
    from tests.support.cli import run_cli
    from tests.test_tuning import runs_of

    result = run_cli([*SEARCH, "--tuner", "grid", "--workers", "2"], cwd=tmp_path)
    assert result.code == 2
    assert result.err.strip().splitlines()[-2:] == [
        "chief    | error: unknown tuner 'grid' (valid: random, bayesian, hyperband)",
        "error: the tuning chief exited with code 2 (its output is above, prefixed 'chief')"]
    assert "fleet: started chief" in result.out and "fleet: started worker" not in result.out
    [parent] = runs_of(tmp_path, "search")  # the chief's own record of why, as without --workers
    assert parent.info.status == "FAILED"


def test_fleet_plan_pins_each_worker_and_shares_the_token(monkeypatch):
    from deepsuite.app.fleet import Fleet

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    monkeypatch.delenv("DEEPSUITE_TUNE_TOKEN", raising=False)
    fleet = Fleet(["image-classification", "--preset", "smoke"], 3)  # builds the plan; starts nothing
    assert [w.env["CUDA_VISIBLE_DEVICES"] for w in fleet.workers] == ["3", "5", "3"]
    assert all(w.env["TF_FORCE_GPU_ALLOW_GROWTH"] == "true" and w.env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
               for w in fleet.workers)  # three workers on two GPUs share them: memory on demand
    assert fleet.chief.env["CUDA_VISIBLE_DEVICES"] == "3"
    tokens = {child.env["DEEPSUITE_TUNE_TOKEN"] for child in fleet.children()}
    assert len(tokens) == 1 and len(tokens.pop()) >= 32  # one fresh random token for all
    assert fleet.workers[1].command[-8:] == ["--distributed", "worker", "--chief", f"127.0.0.1:{fleet.port}",
                                             "--worker-id", "worker-2", "--connect-timeout", "600"]
    assert fleet.chief.command[-6:] == ["--distributed", "chief", "--host", "127.0.0.1", "--port", str(fleet.port)]
    assert fleet.describe()[1:] == ["fleet: chief on GPU 3 (on-demand memory, for the best model's evaluation)",
                                    "fleet: worker-1 on GPU 3 (shared, on-demand memory)",
                                    "fleet: worker-2 on GPU 5 (shared, on-demand memory)",
                                    "fleet: worker-3 on GPU 3 (shared, on-demand memory)"]

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    monkeypatch.setenv("DEEPSUITE_TUNE_TOKEN", "team-secret")
    fleet = Fleet(["image-classification"], None)  # per-device: one worker per GPU, the user's token kept
    assert [w.env["CUDA_VISIBLE_DEVICES"] for w in fleet.workers] == ["0", "1", "2", "3"]
    assert "TF_FORCE_GPU_ALLOW_GROWTH" not in fleet.workers[0].env  # its own GPU: the backend's usual allocation
    assert {child.env["DEEPSUITE_TUNE_TOKEN"] for child in fleet.children()} == {"team-secret"}
    assert "from the environment" in fleet.describe()[0]

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    fleet = Fleet(["image-classification"], 2)
    assert all("CUDA_VISIBLE_DEVICES" not in w.env or w.env["CUDA_VISIBLE_DEVICES"] == "" for w in fleet.workers)
    assert fleet.describe()[1] == "fleet: no GPU visible: nothing is pinned, the workers share this machine's CPU cores"
