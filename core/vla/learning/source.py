"""Which parameters each arm's next episode runs: the learner's end of a learnable policy.

A learnable policy (``vla-primitives``) asks ``params_for(session)`` when an episode's first
request (``reset=True``) arrives for a session, and keeps those parameters for the episode.
Every arm of a run has its own session name, so the learner assigns a candidate to an arm
just before it tells that arm to start the episode. Calls come from the policy server's model
thread, assignments from the learner's: both go through one lock.
"""

from __future__ import annotations

import threading


class UnassignedSession(LookupError):
    """A session asked for parameters that the learner never assigned."""


class ParameterSource:
    def __init__(self, default: dict[str, float] | None = None):
        self._lock = threading.Lock()
        self._by_session: dict[str, dict[str, float]] = {}
        self.default = dict(default) if default is not None else None
        self.handed: dict[str, int] = {}  # session -> episodes started (what the policy asked for)

    def assign(self, session: str, params: dict[str, float]) -> None:
        with self._lock:
            self._by_session[session] = dict(params)

    def params_for(self, session: str) -> dict[str, float]:
        with self._lock:
            params = self._by_session.get(session, self.default)
            if params is None:
                raise UnassignedSession(f"no parameters assigned to session {session!r}")
            self.handed[session] = self.handed.get(session, 0) + 1
            return dict(params)
