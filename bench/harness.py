"""What the pipeline benches share: the same flags, one preset run through the real runner (so a bench
measures what `deepsuite run` does), the wall clock, load and peak memory around it, and the bench
figures written back to that MLflow run so they sit beside its training metrics in the UI.

Every bench also prints which data a figure was measured on (`describe_data`: seed, split sizes, a digest
of the test split as used) and ends with `finish`, whose exit code follows the target verdicts.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from deepsuite.app.console import filter_native_logs  # noqa: E402
from digest import data_digest  # noqa: E402,F401  (bench/ is on sys.path when a bench runs)

filter_native_logs()  # figures, not TensorFlow's C++ start-up lines (installed before anything imports it)

from deepsuite.common import config as config_lib  # noqa: E402
from deepsuite.common import runner  # noqa: E402
from deepsuite.common.tracking import Tracker  # noqa: E402


def parser(doc: str | None) -> argparse.ArgumentParser:
    """--preset, --set key=value (repeatable) and --store, as every pipeline bench takes them."""
    parsed = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parsed.add_argument("--preset", default="default")
    parsed.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parsed.add_argument("--store", type=Path, default=REPO / "bench" / "results" / "mlruns",
                        help="MLflow store folder (default: bench/results/mlruns, git-ignored)")
    return parsed


@dataclass
class BenchRun:
    pipeline: object
    config: object
    result: runner.RunResult
    tracker: Tracker
    wall: float
    peak_mb: float
    load_before: float
    load_after: float

    @cached_property
    def run(self):  # read once: the figures below and the bench script all look at the same run
        return self.tracker.get_run(self.result.run_id)

    @property
    def fit_seconds(self) -> float:
        return self.run.data.metrics["fit_seconds"]

    @property
    def epochs(self) -> int:
        return len(self.result.history["loss"])

    def log(self, figures: dict[str, float]) -> None:
        """Adds the bench's figures (plus wall, peak memory and load) to the run that was measured."""
        figures = {"bench_wall_seconds": self.wall, "bench_peak_rss_mb": self.peak_mb,
                   "bench_load_before": self.load_before, "bench_load_after": self.load_after, **figures}
        self.tracker.start(self.pipeline.name, self.result.run_name, {}, resume_run_id=self.result.run_id)
        self.tracker.log_metrics(figures)
        self.tracker.end("FINISHED")

    def load_line(self) -> str:
        return (f"load average {self.load_before:.1f} before, {self.load_after:.1f} after "
                f"({os.cpu_count()} cores; the bench itself accounts for up to {os.cpu_count()})")


def run_bench(pipeline, args: argparse.Namespace, fixed: list[str] = ()) -> BenchRun:
    """Runs `args.preset` with the bench's `fixed` overrides first and the user's --set after them."""
    watch_data(pipeline)
    config = config_lib.resolve(pipeline.config_cls, pipeline.presets, args.preset, None,
                                [*fixed, *args.overrides])
    load_before = os.getloadavg()[0]
    started = time.time()
    result = runner.run(pipeline, config, store_dir=args.store, echo=lambda line: None)
    wall = time.time() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return BenchRun(pipeline, config, result, Tracker(None, args.store), wall, peak_mb, load_before,
                    os.getloadavg()[0])


_verdicts: list[bool] = []  # every verdict this process printed, for `finish`


def verdict(ok: bool) -> str:
    """"met" / "NOT met" for a target line; remembered so the exit code can follow it."""
    _verdicts.append(bool(ok))
    return "met" if ok else "NOT met"


def finish(preset: str) -> int:
    """The bench's exit code: 1 when a stated target was missed, so a script or CI sees it without reading.
    The smoke preset only shows that the bench runs end to end (its figures are far from any target), so its
    verdicts are printed but never fail it."""
    missed = _verdicts.count(False)
    if preset == "smoke":
        print("smoke preset: targets reported, not gated")
        return 0
    print(f"targets: {len(_verdicts) - missed} met, {missed} NOT met" if _verdicts else
          f"targets: none stated for preset {preset}")
    return 1 if missed else 0


def describe_data(splits, seed: int) -> str:
    """Prints (and returns) which data the figures below were measured on: the seed, the split sizes and a
    digest of the test split's inputs and targets exactly as the model saw them."""
    line = (f"seed {seed} | split sizes train {len(splits.train)}, validation {len(splits.val)}, "
            f"test {len(splits.test)} | test digest {data_digest((splits.test.x, splits.test.y))}")
    print(line, flush=True)
    return line


def watch_data(pipeline):
    """Makes `pipeline` describe every set of splits it loads, when it loads them: the runner and the tuner
    load data inside their own calls, so wrapping load_data is how a bench sees the splits as used."""
    load = pipeline.load_data

    def load_data(config):
        splits = load(config)
        describe_data(splits, config.seed)
        return splits

    pipeline.load_data = load_data
    return pipeline


def cpu_seconds() -> float:
    """This process's user + system CPU time: what a loaded, shared machine's wall clock cannot give."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class FitCpuMarks:
    """Mixed in before a pipeline class: CPU seconds where fit starts (the runner calls fit_data just before
    fit) and ends (evaluate follows it), and the splits and model as the run used them, for the peers."""

    def fit_data(self, splits, config):
        self.marks = {"fit_start": cpu_seconds()}
        self.splits = splits
        return super().fit_data(splits, config)

    def evaluate(self, model, splits, config):
        self.marks["fit_end"] = cpu_seconds()
        self.model = model
        return super().evaluate(model, splits, config)

    @property
    def fit_cpu(self) -> float:
        return self.marks["fit_end"] - self.marks["fit_start"]
