"""A bench's result as a small JSON file in bench/figures/: our figure, each peer's figure measured in the same
run on the same split, and the ratios between them (issue 26).

Absolute times do not travel between machines, so every peer row carries the quality delta and the time ratio
measured in the same process run; the README's benchmark table is generated from these files
(`python bench/table.py --write`), and tests/test_benches.py fails when the two disagree. Kept free of the
harness's side effects so a test can import it.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path

FIGURES = Path(__file__).resolve().parent / "figures"


@dataclass
class Figure:
    """One model's figure on the bench's split: `value` of the bench's metric, `seconds` of training (or of
    the whole method, for a method without training), and how it was configured."""

    name: str
    value: float
    seconds: float
    note: str = ""


@dataclass
class BenchResult:
    bench: str                    # file stem under bench/
    command: str                  # how to reproduce it
    metric: str                   # e.g. "test accuracy", "test RMSE"
    higher_is_better: bool
    ours: Figure
    peers: list[Figure]
    seed: int
    split: str                    # sizes and the test digest, as the bench printed them
    protocol: str                 # how our recipe was chosen (validation only, or not)
    targets: list[str] = field(default_factory=list)   # "what: met" / "what: NOT met"
    machine: dict = field(default_factory=dict)
    date: str = ""
    commit: str = ""

    def delta(self, peer: Figure) -> float:
        """Ours minus the peer's, signed so that positive is better for us."""
        sign = 1 if self.higher_is_better else -1
        return sign * (self.ours.value - peer.value)

    def time_ratio(self, peer: Figure) -> float | None:
        return self.ours.seconds / peer.seconds if peer.seconds > 0 else None


def machine() -> dict:
    """What the times were measured on: CPU model, cores, load, and the accelerator if any."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "load_average": round(os.getloadavg()[0], 1),
            "accelerator": os.environ.get("DEEPSUITE_BENCH_ACCELERATOR", "none"),
            "backend": os.environ.get("KERAS_BACKEND", "tensorflow")}


def commit() -> str:
    """HEAD, with "+changes" when tracked code differs from it: a figure measured before its recipe change was
    committed must not be read as HEAD's (recorded figures and Markdown do not count)."""
    from deepsuite.common.backend import git_revision

    revision = git_revision(FIGURES.parent.parent, ignore=("bench/figures", "*.md"))
    return "" if revision is None else revision[0][:7] + ("+changes" if revision[1] else "")


def ratio_lines(result: BenchResult) -> list[str]:
    """The side-by-side lines a bench prints: each peer's figure, the delta and the time ratio."""
    unit = "pp" if "accuracy" in result.metric else ""
    scale = 100 if unit else 1
    lines = [f"{result.metric}, same split, same run ({result.split}):",
             f"  {'ours: ' + result.ours.name:<52} {result.ours.value:>9.4f}  {result.ours.seconds:>8.1f} s"]
    for peer in result.peers:
        ratio = result.time_ratio(peer)
        delta = result.delta(peer)
        times = f"time x{ratio:.2f}" if ratio else "time: peer untimed"
        lines.append(f"  {peer.name:<52} {peer.value:>9.4f}  {peer.seconds:>8.1f} s   ours {abs(delta) * scale:.4g}"
                     f"{unit} {'better' if delta > 0 else 'worse'}, {times}")
    return lines


def save(result: BenchResult, folder: Path = FIGURES) -> Path:
    """Writes bench/figures/<bench>.json (preset `default` only: other presets print but do not record)."""
    result.machine = result.machine or machine()
    result.date = result.date or datetime.date.today().isoformat()
    result.commit = result.commit or commit()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{result.bench}.json"
    path.write_text(json.dumps(asdict(result), indent=1) + "\n")
    return path


def load_all(folder: Path = FIGURES) -> list[BenchResult]:
    results = []
    for path in sorted(folder.glob("*.json")):
        raw = json.loads(path.read_text())
        raw["ours"] = Figure(**raw["ours"])
        raw["peers"] = [Figure(**p) for p in raw["peers"]]
        results.append(BenchResult(**raw))
    return results
