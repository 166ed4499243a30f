"""One line per finished trial: i/N, its hyperparameters, objective, best so far, elapsed time and ETA."""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Mapping


def duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def format_values(values: Mapping[str, Any]) -> str:
    """Hyperparameters as `name=value` pairs; Hyperband's epoch bookkeeping as `epochs a->b`."""
    parts = [f"{k}={short(v)}" for k, v in values.items() if not k.startswith("tuner/")]
    if "tuner/epochs" in values:
        parts.append(f"epochs {values.get('tuner/initial_epoch', 0)}->{values['tuner/epochs']}")
    return " ".join(parts)


class Progress:
    """Counts ended trials of this session; the ETA assumes the remaining trials take the mean so far."""

    def __init__(self, total: int | None, objective: str, echo: Callable[[str], None] = print,
                 already_done: int = 0):
        self.total = total
        self.objective = objective
        self.echo = echo
        self.started = time.time()
        self.already_done = already_done
        self.done_here = 0

    @property
    def done(self) -> int:
        return self.already_done + self.done_here

    def eta(self) -> float | None:
        if not self.total or not self.done_here:
            return None
        remaining = max(0, self.total - self.done)
        return (time.time() - self.started) / self.done_here * remaining

    def trial_ended(self, values: Mapping[str, Any], value: float | None, best: float | None,
                    failure: str | None = None, who: str = "", trial_id: str | None = None) -> str:
        self.done_here += 1
        total = self.total if self.total else "?"
        result = (f"FAILED ({failure})" if failure else
                  f"{self.objective}={value:.4f}" if value is not None and math.isfinite(value) else "no value")
        best_text = f"best={best:.4f}" if best is not None and math.isfinite(best) else "best=-"
        elapsed = time.time() - self.started
        line = (f"trial {self.done}/{total}{who}  {result}  {best_text}  [{format_values(values)}]  "
                f"elapsed {duration(elapsed)}  ETA {duration(self.eta()) if self.total else '?'}")
        if trial_id is not None:  # Keras Tuner's id (MLflow tag deepsuite.trial_id); ids count from 0
            line += f"  (trial id {trial_id})"
        self.echo(line)
        return line
