"""The benchmark's progress display: which stage runs (i/n) and how long is left.

The time left is the sum of the remaining stages' estimates (seconds on 2 idle cores), scaled by
how long the finished stages took compared with their own estimates, so that a slower (or busier)
machine sees a longer, and more accurate, forecast after the first stage, and shared among the stages
that run at once. Lines go to ``logging``; a stage run in this process also shows the engine's step bar.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


def duration(seconds: float) -> str:
    """``93.4`` -> ``"1m33s"``."""
    seconds = max(0, int(round(seconds)))
    minutes, secs = divmod(seconds, 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


@dataclass
class StageProgress:
    """Tracks planned stages (name -> estimate), the running ones and the wall time of finished ones.

    ``jobs`` stages may run at once; the time left divides the remaining work among them. ``total``:
    the planned wall time of all stages (their schedule's makespan, which waits on stages that others
    need); the remaining work is then divided by the plan's parallelism, sum(estimates) / total, so
    that the first estimate equals ``total`` and the later ones follow from it.
    """

    estimates: dict[str, float]
    jobs: int = 1
    total: float | None = None
    started: float = field(default_factory=time.perf_counter)
    done: dict[str, float] = field(default_factory=dict)
    running: dict[str, float] = field(default_factory=dict)

    def speed(self) -> float:
        """Measured / estimated time of the finished stages (1.0 before any finishes)."""
        planned = sum(self.estimates[name] for name in self.done)
        return sum(self.done.values()) / planned if planned > 0 else 1.0

    def remaining(self) -> float:
        """Seconds left for the stages not finished yet, the running ones counted less their elapsed time."""
        now, speed = time.perf_counter(), self.speed()
        left = sum(est for name, est in self.estimates.items() if name not in self.done) * speed
        left -= sum(min(now - t0, self.estimates[name] * speed) for name, t0 in self.running.items())
        if self.total:
            parallel = min(max(1.0, sum(self.estimates.values()) / self.total), self.jobs)
        else:
            parallel = max(1, min(self.jobs, len(self.estimates) - len(self.done)))
        return max(left, 0.0) / parallel

    def start(self, name: str, title: str) -> None:
        index = list(self.estimates).index(name) + 1
        self.running[name] = time.perf_counter()
        log.info("[stage %d/%d] %s: %s (about %s; about %s left in all)", index, len(self.estimates), name, title,
                 duration(self.estimates[name] * self.speed()), duration(self.remaining()))

    def finish(self, name: str) -> float:
        """Record the stage's wall time; returns it."""
        seconds = time.perf_counter() - self.running.pop(name, time.perf_counter())
        self.done[name] = seconds
        log.info("[%d/%d done] %s took %s; %s elapsed, about %s left", len(self.done), len(self.estimates), name,
                 duration(seconds), duration(time.perf_counter() - self.started), duration(self.remaining()))
        return seconds
