"""A real policy connection on simulated control time: a simulated arm as fast as the CPU allows.

On a ``SimulatedClock`` the control loop does not wait for the wall clock between ticks, so a
simulated arm runs as fast as its physics. The policy is still a real server over a real
socket, though, and its replies take real time. ``LockstepLink`` reconciles the two: a reply
is taken to arrive ``latency_s`` of control time after its request was sent, and when the loop
reaches that moment it blocks (in real time) until the reply has come. The run is then the one
a policy with exactly that latency would give, however slow the server or the machine is.
"""

from __future__ import annotations

import time

from vla.client.events import Disconnected, Failed, InferenceRequest, Reply, WorkerFailed


class LockstepLink:
    def __init__(self, link, clock, latency_s: float = 0.0, reply_timeout_s: float = 30.0):
        if not getattr(clock, "simulated", False):
            raise ValueError("LockstepLink needs a simulated clock")
        self.link = link
        self.clock = clock
        self.latency_s = float(latency_s)
        self.reply_timeout_s = float(reply_timeout_s)
        self._outstanding: tuple[InferenceRequest, float, float] | None = None  # request, sent, due

    @property
    def url(self) -> str:
        return getattr(self.link, "url", "?")

    def start(self):
        self.link.start()
        return self

    def stop(self, *args, **kwargs) -> None:
        self.link.stop(*args, **kwargs)

    def submit(self, request: InferenceRequest) -> None:
        now = self.clock.now()
        self._outstanding = (request, now, now + self.latency_s)
        self.link.submit(request)

    def wait_event(self, timeout: float):
        return self.link.wait_event(timeout) if hasattr(self.link, "wait_event") else None

    def poll(self) -> list:
        events = [self._stamp(e) for e in self.link.poll()]
        if self._outstanding is not None and self.clock.now() >= self._outstanding[2]:
            events.extend(self._wait_for_answer())
        return events

    def _wait_for_answer(self) -> list:
        """Block until the outstanding request is answered (or the connection says why not)."""
        request = self._outstanding[0]
        deadline = time.monotonic() + self.reply_timeout_s
        events = []
        while self._outstanding is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                self._outstanding = None
                events.append(Disconnected(f"no reply within {self.reply_timeout_s:g} s (simulated clock)"))
                break
            event = self.link.wait_event(min(left, 0.5))
            if event is None:
                continue
            events.append(self._stamp(event))
            if isinstance(event, (Reply, Failed)) and event.request is request:
                break
            if isinstance(event, (Disconnected, WorkerFailed)):
                self._outstanding = None
        return events

    def _stamp(self, event):
        """Replies carry control-clock times: sent when submitted, received when due."""
        if self._outstanding is not None and isinstance(event, (Reply, Failed)) and event.request is self._outstanding[0]:
            _, sent, due = self._outstanding
            self._outstanding = None
            if isinstance(event, Reply):
                return Reply(event.request, event.reply, sent, max(due, self.clock.now()))
        return event
