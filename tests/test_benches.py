"""The benches' smoke mode end to end, and the digest that says which data a bench figure was measured on.

Each bench script runs its pipeline's smoke preset as a real subprocess (one short training each, 20-90 s
on two cores, so these are `slow`) and must print the seed, the split sizes and a digest of the test split
before its figures, at least one target verdict, and exit 0: smoke reports the targets but never gates.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from tests.support.cli import REPO

BENCHES = ["image_classification", "image_denoising", "image_generation", "medical_imaging", "recommendation",
           "sentiment_analysis", "text_generation", "tuning"]
TAKES_STORE = set(BENCHES) - {"sentiment_analysis"}  # that one runs the CLI in a temporary folder of its own
DATA_LINE = re.compile(r"^seed \d+ \| split sizes train \d+, validation \d+, test \d+ \| test digest [0-9a-f]{12}$",
                       re.MULTILINE)
VERDICT = re.compile(r"target.*\b(NOT met|met)\b")


@pytest.mark.slow
@pytest.mark.parametrize("name", BENCHES)
def test_bench_smoke_prints_its_data_and_verdicts(name, tmp_path):
    args = [sys.executable, str(REPO / "bench" / f"{name}.py"), "--preset", "smoke"]
    if name in TAKES_STORE:
        args += ["--store", str(tmp_path / "mlruns")]
    proc = subprocess.run(args, cwd=REPO, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, capture_output=True,
                          text=True, timeout=600, check=False)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    data, verdict = DATA_LINE.search(out), VERDICT.search(out)
    assert data, out
    assert verdict, out
    assert data.start() < verdict.start(), "the data line must come before the figures it describes"
    assert "smoke preset: targets reported, not gated" in out


def test_data_digest_follows_the_contents():
    harness = _load_digest()
    x = np.arange(24, dtype=np.float32).reshape(6, 4)
    ids = {"user": np.arange(6), "item": np.array(["a", "b", "c", "d", "e", "f"], dtype=object)}
    texts = ["a good film", "a dull one"]
    digest = harness.data_digest((x, ids, texts))
    assert re.fullmatch(r"[0-9a-f]{12}", digest)
    assert harness.data_digest((x.copy(), {k: v.copy() for k, v in ids.items()}, list(texts))) == digest

    changed = x.copy()
    changed[5, 3] += 1
    assert harness.data_digest((changed, ids, texts)) != digest
    assert harness.data_digest((x, ids, ["a good film", "a dull one!"])) != digest
    assert harness.data_digest((x, {**ids, "item": ids["item"][::-1]}, texts)) != digest
    assert harness.data_digest((x[:5], ids, texts)) != digest


def _load_digest():
    """bench/ is not a package: load bench/digest.py from its file."""
    spec = importlib.util.spec_from_file_location("bench_digest", REPO / "bench" / "digest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SWAP_CHECK = """
import sys
sys.path.insert(0, "bench")
import numpy as np
from select_on_validation import validation_in_test_place
from deepsuite.app import registry
from deepsuite.common import config as config_lib

pipeline = registry.get("recommendation")
config = config_lib.resolve(pipeline.config_cls, pipeline.presets, "smoke", None,
                            ["data.split=temporal", "model.kind=two_tower"])
splits = pipeline.load_data(config)
swapped = validation_in_test_place(splits)
before, after = splits.catalogue, swapped.catalogue
assert len(before.val) > 0 and len(after.val) == 0, (len(before.val), len(after.val))
assert np.array_equal(after.test.items, before.val.items) and np.array_equal(after.test.users, before.val.users)
assert np.array_equal(after.seen_matrix(), before.seen_matrix(include_val=False))
fit = pipeline.fit_data(swapped, config)
assert len(fit.x["user_id"]) == len(before.train), (len(fit.x["user_id"]), len(before.train))
assert swapped.test is splits.val
from select_on_validation import ValidationAsTest
skipped = ValidationAsTest(pipeline, evaluate=False).evaluate(None, swapped, config)  # None: would fail if called
assert skipped.metrics == {}, skipped.metrics
print("swap ok")
"""


def test_selection_ranks_recommendation_on_validation_ratings_it_did_not_train_on():
    """bench/select_on_validation.py moves recommendation's validation ratings into the test place inside the
    catalogue too (its rankings read the catalogue), and empties validation so the two-tower, which otherwise
    fits train + validation, does not train on the ratings it is ranked by; a selection read from the training
    history evaluates nothing. Run in a subprocess: importing a
    bench installs its log filter on the process's stderr."""
    proc = subprocess.run([sys.executable, "-c", SWAP_CHECK], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=300, check=False)
    assert proc.returncode == 0 and "swap ok" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]


FINISH = """
import sys
sys.path.insert(0, "bench")
import harness
for ok in sys.argv[2:]:
    harness.verdict(ok == "met")
sys.exit(harness.finish(sys.argv[1]))
"""


@pytest.mark.parametrize("preset, verdicts, code", [
    ("default", ["met", "missed", "met"], 1),
    ("default", ["met", "met"], 0),
    ("smoke", ["missed"], 0),
])
def test_bench_exit_code_follows_the_target_verdicts(preset, verdicts, code):
    """A missed target makes a bench exit 1 so scripts and CI see it; smoke reports targets without gating."""
    proc = subprocess.run([sys.executable, "-c", FINISH, preset, *verdicts], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=120, check=False)
    assert proc.returncode == code, proc.stdout + proc.stderr[-2000:]
    missed = verdicts.count("missed")
    expected = ("smoke preset: targets reported, not gated" if preset == "smoke"
                else f"targets: {len(verdicts) - missed} met, {missed} NOT met")
    assert expected in proc.stdout


@pytest.mark.slow
def test_data_parallel_bench_compares_four_simulated_devices_with_one(tmp_path):
    """bench/data_parallel.py runs the preset on 1 and on 4 simulated JAX devices in subprocesses and prints
    both final validation figures with the tolerance verdict (text generation only: the shortest)."""
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "data_parallel.py"), "--preset", "smoke",
                           "--pipelines", "text-generation", "--store", str(tmp_path)], cwd=REPO,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, capture_output=True, text=True,
                          timeout=600, check=False)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    assert len(re.findall(r"^   seed 42 \| split sizes", out, re.MULTILINE)) == 2, out
    line = re.search(r"final val_loss: 4 devices ([\d.]+), 1 device ([\d.]+); .*target met", out)
    assert line, out
    assert float(line[1]) == pytest.approx(float(line[2]), rel=1e-3)
    assert "mesh batch=4" in out and "targets: 1 met, 0 NOT met" in out


def _load_bench_module(name: str):
    """bench/<name>.py by its file (bench/ is not a package; table.py puts bench/ on sys.path for record.py)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def test_readme_benchmark_table_is_the_one_generated_from_the_bench_figures():
    """Every figure in the README's side-by-side table is one a bench wrote to bench/figures/*.json
    (`python bench/table.py --write` regenerates it)."""
    table = _load_bench_module("table")
    results = table.load_all(table.FIGURES)
    assert results, "bench/figures/ holds no results"
    block = table.readme_block((REPO / "README.md").read_text())
    assert block is not None, "README.md has lost its bench-table markers"
    assert block == table.render(results), "README table is stale: run python bench/table.py --write"
    for result in results:
        assert result.peers and result.seed >= 0 and result.date and result.machine.get("cores")
        assert f"`{result.command}`" in block


def test_a_bench_result_signs_its_deltas_by_the_metric_direction(tmp_path):
    record = _load_bench_module("record")
    table = _load_bench_module("table")
    rmse = record.BenchResult("rec", "python bench/rec.py", "test RMSE", False, record.Figure("ours", 0.90, 20.0),
                              [record.Figure("SVD", 0.94, 4.0), record.Figure("kNN", 0.88, 0.0)], 1, "split", "p")
    assert rmse.delta(rmse.peers[0]) == pytest.approx(0.04) and rmse.delta(rmse.peers[1]) == pytest.approx(-0.02)
    assert rmse.time_ratio(rmse.peers[0]) == pytest.approx(5.0) and rmse.time_ratio(rmse.peers[1]) is None
    record.save(rmse, tmp_path)
    again = record.load_all(tmp_path)[0]
    assert again.peers[0].value == 0.94 and again.machine["cores"] and again.date
    rendered = table.render([again])
    assert "SVD: 0.9400 in 4.0 s | 0.0400 better | 5.00x" in rendered
    assert "kNN: 0.8800 (untimed) | 0.0200 worse | -" in rendered


@pytest.fixture
def checkout(tmp_path):
    """A real git checkout with one commit: config.py, README.md and bench/figures/x.json."""
    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    (tmp_path / "bench" / "figures").mkdir(parents=True)
    for name in ("config.py", "README.md", "bench/figures/x.json"):
        (tmp_path / name).write_text("0\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "start")
    return tmp_path


def test_a_recorded_figure_says_when_it_was_measured_on_uncommitted_code(checkout, monkeypatch):
    """A bench run before its recipe change is committed records "<HEAD>+changes", not a bare HEAD whose code
    did not produce it; re-recorded figures and Markdown edits leave the commit bare."""
    record = _load_bench_module("record")
    monkeypatch.setattr(record, "FIGURES", checkout / "bench" / "figures")
    head = record.commit()
    assert re.fullmatch(r"[0-9a-f]{7,}", head)
    (checkout / "README.md").write_text("1\n")
    (checkout / "bench" / "figures" / "x.json").write_text("1\n")
    assert record.commit() == head
    (checkout / "config.py").write_text("1\n")
    assert record.commit() == f"{head}+changes"


def test_a_run_tagged_with_head_says_whether_the_tree_differed_from_it(checkout, tmp_path_factory):
    """The `git_dirty` run tag: any edit to a tracked file, seen from any folder of the checkout, marks the
    revision; untracked files do not; outside a checkout there is no revision."""
    from deepsuite.common.backend import git_revision, git_tags

    head, dirty = git_revision(checkout / "bench")
    assert re.fullmatch(r"[0-9a-f]{40}", head) and dirty is False
    (checkout / "notes.txt").write_text("untracked\n")
    assert git_revision(checkout / "bench") == (head, False)
    (checkout / "README.md").write_text("1\n")
    assert git_revision(checkout / "bench") == (head, True)
    assert git_revision(checkout / "bench", ignore=("*.md",)) == (head, False)
    assert git_revision(tmp_path_factory.mktemp("not_a_checkout")) is None
    assert set(git_tags()) == {"git_commit", "git_dirty"} and git_tags()["git_dirty"] in ("true", "false")


@pytest.mark.slow
def test_gpu_readiness_script_plans_and_times_a_full_run_without_tensorflow(tmp_path):
    """bench/gpu_full.py as the GPU machine runs it (JAX, TensorFlow absent, the suite not installed but on the
    path): --plan lowers one real training step with XLA, --measure times real steps through the suite's fit
    path and stops; both size the whole run from the preset's steps per epoch and epochs (smoke preset here)."""
    figures = {}
    for mode in ("plan", "measure"):
        out = tmp_path / f"{mode}.json"
        script = ("import runpy, sys; import tests.support.without_tensorflow; "
                  f"sys.argv = ['gpu_full.py', '--{mode}', '--preset', 'smoke', '--pipelines', 'image-denoising', "
                  f"'--steps', '3', '--warmup', '2', '--out', {str(out)!r}]; "
                  "runpy.run_path('bench/gpu_full.py', run_name='__main__')")
        proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=600,
                              env={**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3"}, check=False)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert "image-denoising" in proc.stdout and "FAILED" not in proc.stdout, proc.stdout
        figures[mode] = json.loads(out.read_text())["results"]["image-denoising"]
    plan, measured = figures["plan"], figures["measure"]
    assert plan["steps"] == plan["steps_per_epoch"] * plan["epochs"] == measured["steps"] > 3
    assert plan["flops_per_step"] > 1e6 and plan["memory_estimate_bytes"] > 4 * plan["parameters"]
    assert measured["timed_steps"] == 3 and measured["seconds_per_step"] > 0
    assert measured["full_training_seconds"] == pytest.approx(measured["seconds_per_step"] * measured["steps"])
