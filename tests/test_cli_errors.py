"""Bad input at the command line: one clear line, a non-zero exit, a consistent MLflow store.

These errors come before any training, so the CLI runs in-process (tests.support.cli.run_in_process);
`--help` keeps a real subprocess, since it is what a user types first.
"""
import mlflow
import pytest

from tests.support.cli import REPO, run_cli, run_in_process


def one_line_error(result, *fragments):
    assert result.code == 2, (result.code, result.err[-2000:])
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.err, result.err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("args, fragments", [
    (["run", "image-clasification"], ["unknown pipeline 'image-clasification'", "did you mean 'image-classification'"]),
    (["run", "image-classification", "--preset", "fast"], ["unknown preset 'fast'", "smoke"]),
    (["run", "image-classification", "--set", "train.epochs"], ["bad --set 'train.epochs'"]),
    (["run", "image-classification", "--set", "train.epochs=many"], ["train.epochs", "'many'"]),
    (["predict", "0123456789abcdef0123456789abcdef", "x.png"], ["no run '0123456789abcdef0123456789abcdef'"]),
])
def test_one_line_errors(args, fragments, tmp_path, monkeypatch, capsys):
    one_line_error(run_in_process(args, tmp_path, monkeypatch, capsys), *fragments)


def test_yaml_typo(tmp_path, monkeypatch, capsys):
    (tmp_path / "my.yaml").write_text("train:\n  epoks: 3\n")
    one_line_error(run_in_process(["run", "image-classification", "--config", "my.yaml"], tmp_path, monkeypatch, capsys),
                   "'train.epoks'", "did you mean 'train.epochs'")


def test_failed_run_is_marked_failed_with_reason(tmp_path, monkeypatch, capsys):
    (tmp_path / "imgs" / "only").mkdir(parents=True)
    result = run_in_process(["run", "image-classification", "--preset", "smoke", "--set",
                             f"data.source=folder:{tmp_path / 'imgs'}"], tmp_path, monkeypatch, capsys)
    one_line_error(result, "class folder", "has no images")
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("image-classification").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FAILED"
    assert "has no images" in runs[0].data.tags["deepsuite.status_reason"]
    assert not client.list_artifacts(runs[0].info.run_id)  # no half-written model
    refused = run_in_process(["predict", runs[0].info.run_id, "x.png"], tmp_path, monkeypatch, capsys)
    one_line_error(refused, f"run {runs[0].info.run_id} is FAILED (DataError: ", "use a FINISHED run")


def test_help_explains_commands(tmp_path):
    result = run_cli(["--help"], cwd=tmp_path)
    assert result.code == 0 and "run" in result.out and "predict" in result.out and "examples:" in result.out


def test_a_chief_on_a_busy_port_is_refused_before_any_run(tmp_path, monkeypatch, capsys):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_in_process(["tune", "image-classification", "--preset", "smoke", "--distributed", "chief",
                                 "--host", "127.0.0.1", "--port", str(port)], tmp_path, monkeypatch, capsys)
    one_line_error(result, f"port {port} on 127.0.0.1 is already in use")
    assert not (tmp_path / "mlruns").exists()  # refused before the search opened its parent run


def test_a_command_the_models_pipeline_lacks_names_what_it_offers(tmp_path, monkeypatch, capsys):
    fixture = str(REPO / "tests" / "fixtures" / "exports-v0" / "recommendation")
    one_line_error(run_in_process(["generate", fixture, "--prompt", "hi"], tmp_path, monkeypatch, capsys),
                   "pipeline 'recommendation' does not support `deepsuite generate` (it offers: recommend)")


def test_servers_say_when_they_listen_beyond_this_machine_and_the_chief_does_not_by_default():
    from deepsuite.app.cli import build_parser
    from deepsuite.app.ports import exposure_warning

    chief = build_parser(["tune"]).parse_args(["tune", "image-classification", "--distributed", "chief"])
    assert chief.host == "127.0.0.1"
    assert exposure_warning("127.0.0.1", "the scoring server", "can send it requests") is None
    assert exposure_warning("localhost", "the scoring server", "can send it requests") is None
    assert exposure_warning("0.0.0.0", "the scoring server", "can send it requests") == (
        "  warning: the scoring server listens on 0.0.0.0: anyone who can reach this machine can send it requests")
    assert exposure_warning("192.168.1.5", "the tuning chief", "can join the search") is not None
