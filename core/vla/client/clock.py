"""Clocks for the control loop. The loop only reads time through one of these, so tests and
the bench can run it on simulated time (deterministic, faster than real time)."""

from __future__ import annotations

import time


class RealClock:
    """Monotonic wall time in seconds."""

    simulated = False

    def now(self) -> float:
        return time.perf_counter()

    def sleep_until(self, t: float) -> None:
        delay = t - time.perf_counter()
        if delay > 0:
            time.sleep(delay)


class SimulatedClock:
    """Time that moves only when the loop sleeps (or a test advances it)."""

    simulated = True

    def __init__(self, start: float = 0.0):
        self.t = float(start)

    def now(self) -> float:
        return self.t

    def sleep_until(self, t: float) -> None:
        self.t = max(self.t, float(t))

    def advance(self, dt: float) -> None:
        self.t += float(dt)
