"""`deepsuite compare`: the last N runs of a pipeline side by side in the terminal.

One column per run (newest first), one row per thing worth comparing: status, start, duration, the
params whose values differ between the runs (the rest are noise), then the main metrics (`test_*`),
best value in bold. Below the table, links into the MLflow UI's own compare view and run pages.
"""
from __future__ import annotations

import json
import shutil
import sys
import urllib.parse
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

from deepsuite.common.errors import DeepsuiteError
from deepsuite.common.redaction import redact
from deepsuite.app.ui import ML_VIEW

MAIN_METRIC_PREFIX = "test_"
EXTRA_METRICS = ("fit_seconds",)
LOWER_IS_BETTER = ("loss", "error", "rmse", "mae", "mse", "perplexity", "seconds", "fpr")
VALUE_WIDTH = 28
DEFAULT_UI = "http://127.0.0.1:5000"


def differing_params(runs: Sequence[Any]) -> list[str]:
    """Param names whose values are not the same in every run (missing counts as a value)."""
    keys = sorted({k for run in runs for k in run.data.params})
    return [k for k in keys if len({run.data.params.get(k) for run in runs}) > 1]


def main_metrics(runs: Sequence[Any]) -> list[str]:
    keys = {k for run in runs for k in run.data.metrics}
    main = sorted(k for k in keys if k.startswith(MAIN_METRIC_PREFIX))
    return main + [k for k in EXTRA_METRICS if k in keys]


def lower_is_better(metric: str) -> bool:
    return any(word in metric for word in LOWER_IS_BETTER)


def duration(run: Any) -> str:
    if not run.info.end_time:
        return "running" if run.info.status == "RUNNING" else "-"
    seconds = max(0, (run.info.end_time - run.info.start_time) / 1000)
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    return f"{minutes // 60}h {minutes % 60:02d}m"


def ui_base(tracking_uri: str, ui_url: str | None) -> str:
    """Where the UI lives: the tracking server itself, else `deepsuite ui`'s default address."""
    if ui_url:
        return ui_url.rstrip("/")
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return DEFAULT_UI


def run_link(base: str, experiment_id: str, run_id: str) -> str:
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}?{ML_VIEW}"


def compare_link(base: str, experiment_id: str, run_ids: Sequence[str]) -> str:
    runs = urllib.parse.quote(json.dumps(list(run_ids), separators=(",", ":")))
    experiments = urllib.parse.quote(json.dumps([experiment_id], separators=(",", ":")))
    return f"{base}/#/compare-runs?runs={runs}&experiments={experiments}&{ML_VIEW}"


def _short(value: Any) -> str:
    text = "-" if value is None else str(value)
    return text if len(text) <= VALUE_WIDTH else text[:VALUE_WIDTH - 1] + "…"


def build_table(runs: Sequence[Any], title: str):
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_lines=False, header_style="bold")
    table.add_column("", style="cyan", no_wrap=True)
    for run in runs:
        table.add_column(run.info.run_name or run.info.run_id[:8], overflow="fold")
    table.add_row("run id", *[run.info.run_id[:8] for run in runs])
    table.add_row("status", *[_status(run.info.status) for run in runs])
    table.add_row("started", *[f"{datetime.fromtimestamp(run.info.start_time / 1000):%Y-%m-%d %H:%M}"
                               for run in runs])
    table.add_row("duration", *[duration(run) for run in runs], end_section=True)
    params = differing_params(runs)
    if not params:
        table.add_row("params", *["(all equal)" for _ in runs])
    for key in params:
        table.add_row(key, *[_short(run.data.params.get(key)) for run in runs])
    table.rows[-1].end_section = True
    for key in main_metrics(runs):
        values = [run.data.metrics.get(key) for run in runs]
        present = [v for v in values if v is not None]
        best = (min if lower_is_better(key) else max)(present) if len(present) > 1 else None
        table.add_row(key, *[_metric(v, v is not None and v == best) for v in values])
    return table


def _status(status: str) -> str:
    colour = {"FINISHED": "green", "RUNNING": "yellow"}.get(status, "red")
    return f"[{colour}]{status.lower()}[/{colour}]"


def _metric(value: float | None, best: bool) -> str:
    if value is None:
        return "-"
    text = f"{value:.4g}"
    return f"[bold green]{text}[/bold green]" if best else text


def compare(experiment: str, last: int = 5, tracking_uri: str | None = None, store: Path = Path("mlruns"),
            ui_url: str | None = None, console=None) -> int:
    """Print the table of `experiment`'s last runs and the UI links; DeepsuiteError when there are none."""
    from rich.console import Console

    from deepsuite.app import registry
    from deepsuite.common.tracking import Tracker, recent_runs

    if last < 1:
        raise DeepsuiteError(f"--last {last}: give how many recent runs to compare (1 or more)")
    tracker = Tracker(tracking_uri, store)
    experiment_id, runs = recent_runs(tracker, experiment, last)
    if not runs:
        if experiment not in registry.names():
            registry.get(experiment)  # unknown name: says so, with the closest pipeline name
        raise DeepsuiteError(f"no runs of {experiment!r} in {redact(tracker.uri.split('?')[0])}; "
                             f"start one with `deepsuite run {experiment}` (or pass --store/--tracking-uri)")
    if console is None:
        width = None if sys.stdout.isatty() else max(shutil.get_terminal_size((160, 40)).columns, 160)
        console = Console(width=width, soft_wrap=False)
    title = f"{experiment}: last {len(runs)} run{'s' if len(runs) > 1 else ''} (newest first)"
    console.print(build_table(runs, title))
    base = ui_base(tracker.uri, ui_url)
    local = not tracker.uri.startswith(("http://", "https://"))
    hint = f" (start it with `deepsuite ui --store {store}`)" if local and not ui_url else ""
    console.print(f"MLflow UI{hint}:", highlight=False)
    if len(runs) > 1:
        console.print(f"  compare: {compare_link(base, experiment_id, [r.info.run_id for r in runs])}",
                      highlight=False, soft_wrap=True)
    for run in runs:
        console.print(f"  {run.info.run_name}: {run_link(base, experiment_id, run.info.run_id)}",
                      highlight=False, soft_wrap=True)
    return 0
