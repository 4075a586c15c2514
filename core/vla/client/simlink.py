"""A link to a policy on simulated time, for timing tests and ``bench/async_control.py``.

It stands in for the socket and the server, not for the policy: a request is answered by a
real ``PolicyBackend``'s ``infer`` at once, and the reply is handed back after a latency
drawn from a model, measured on a ``SimulatedClock``. Minutes of control at 30 Hz then run in
seconds and the same seed gives the same run. Outages (``down`` intervals) make the link
drop as a dead server would. Over real sockets the loop uses ``InferenceWorker`` instead.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Any, Callable

from vla.client.events import Connected, Disconnected, InferenceRequest, Reply


def metadata_from_info(info) -> dict[str, Any]:
    """The metadata frame a vla server would send for a backend's ``PolicyInfo``."""
    from vla.protocol.messages import make_metadata

    return make_metadata(info, max_batch=info.max_batch, max_message_bytes=64 << 20, jpeg=False)


class SimulatedLink:
    url = "simulated://policy"

    def __init__(
        self,
        backend,
        clock,
        latency_s: Callable[[], float],
        down: tuple[tuple[float, float], ...] = (),
        metadata: dict[str, Any] | None = None,
    ):
        self.backend = backend
        self.clock = clock
        self.latency_s = latency_s
        self.down = tuple(down)
        self.metadata = metadata if metadata is not None else metadata_from_info(backend.info())
        self._pending: list = []  # (due, seq, event)
        self._seq = itertools.count()
        self._connected = False
        self.requests = 0

    def _is_down(self, t: float) -> bool:
        return any(a <= t < b for a, b in self.down)

    def submit(self, request: InferenceRequest) -> None:
        now = self.clock.now()
        self.requests += 1
        if not self._connected or self._is_down(now):
            return  # lost; the outage is reported by poll
        chunk = self.backend.infer([request.payload])[0]
        due = now + float(self.latency_s())
        if any(a < due and b > now for a, b in self.down):
            return  # the server died while working on it
        heapq.heappush(self._pending, (due, next(self._seq), Reply(request, {"actions": chunk}, now, due)))

    def poll(self) -> list:
        now = self.clock.now()
        events = []
        while self._pending and self._pending[0][0] <= now:
            events.append(heapq.heappop(self._pending)[2])
        down = self._is_down(now)
        if self._connected and down:
            self._connected = False
            self._pending.clear()
            events.append(Disconnected("simulated outage"))
        elif not self._connected and not down:
            self._connected = True
            events.append(Connected(dict(self.metadata)))
        return events
