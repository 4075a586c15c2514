"""Life-cycle states of a service and the body of its /healthz, as Cog does it.

The port opens at once and /healthz says ``starting`` while the model loads, then ``ready``
(HTTP 200), or ``failed`` with the reason (HTTP 503). A failed service stays up and says why,
so `vla ps` and `vla logs` show the cause instead of a restart loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

STARTING, READY, FAILED = "starting", "ready", "failed"


class Lifecycle:
    """One service's state. Safe to change from any thread (warm-up often runs in a worker)."""

    def __init__(self, kind: str, name: str, metrics=None, reason: str = ""):
        self.kind = kind  # "policy", "rewarder", "dashboard": the key naming the component in health()
        self.name = name
        self.metrics = metrics
        self.state = STARTING
        self.reason = reason
        self.started_at = time.time()
        self._settled = threading.Event()
        if metrics is not None:
            metrics.ready.set(0)

    def ready(self) -> None:
        self.state, self.reason = READY, ""
        if self.metrics is not None:
            self.metrics.ready.set(1)
        self._settled.set()

    def fail(self, reason: str) -> None:
        self.state, self.reason = FAILED, reason
        if self.metrics is not None:
            self.metrics.ready.set(0)
        self._settled.set()

    @property
    def is_ready(self) -> bool:
        return self.state == READY

    @property
    def settled(self) -> bool:
        return self._settled.is_set()

    @property
    def http_status(self) -> int:
        return 200 if self.state == READY else 503

    def health(self, **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.state, self.kind: self.name}
        if self.reason:
            body["reason"] = self.reason
        body["uptime_s"] = round(time.time() - self.started_at, 1)
        body.update(extra)
        return body

    def wait(self, timeout: float | None = None) -> bool:
        """Block until ready or failed; False on timeout."""
        return self._settled.wait(timeout)

    async def wait_settled(self, timeout: float | None = None) -> str:
        """Wait (without blocking the loop) until ready or failed; returns the state."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._settled.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                raise asyncio.TimeoutError(f"{self.kind} {self.name} still {self.state} after {timeout}s")
            await asyncio.sleep(0.005)
        return self.state
