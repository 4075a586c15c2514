"""What travels between the control loop and the network side (a worker thread or a simulation)."""

from __future__ import annotations

from typing import Any

import attrs


@attrs.define
class InferenceRequest:
    request_id: int
    episode: int
    tick: int  # the tick after which the observation was taken; the chunk starts at tick + 1
    payload: dict[str, Any]  # the observation map sent on the wire
    t_obs: float  # client clock when the observation was taken
    inference_delay: int = 0  # RTC: ticks that pass before the chunk's targets are used


@attrs.define
class Connected:
    metadata: dict[str, Any]


@attrs.define
class ConnectFailed:
    reason: str


@attrs.define
class Disconnected:
    reason: str


@attrs.define
class Reply:
    request: InferenceRequest
    reply: dict[str, Any]
    t_sent: float
    t_received: float

    @property
    def rtt(self) -> float:
        return self.t_received - self.t_sent


@attrs.define
class Failed:
    """The server answered with an error frame; the connection stays open."""

    request: InferenceRequest
    code: str
    message: str


@attrs.define
class WorkerFailed:
    """The network side itself broke (a bug, a missing module); the run cannot go on."""

    reason: str


Event = Connected | ConnectFailed | Disconnected | Reply | Failed | WorkerFailed
