"""Two policy replicas behind a Service, and one goes away in the middle of an episode.

What README's "From compose to Kubernetes" says, checked over real loopback sockets: a
Kubernetes Service (kube-proxy) picks an endpoint when a TCP connection opens and keeps the
connection there, so an arm's WebSocket stays on one pod for as long as it lives; when that
pod goes away the arm holds its last safe position, the client reconnects through the same
Service address, possibly first to the dead pod whose endpoint is not yet removed, and the
episode goes on with the other replica.

Real: two policy servers, the `vla run` client's worker and controller on real time, the
kinematic test arm. The Service is ``Balancer`` below, a TCP relay that routes per
connection as kube-proxy does (a cluster cannot run here); taking an endpoint "down" resets
its connections, as the kernel does when a pod's process dies, and refuses new ones until
it would have been removed from the Service.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from vla.builtins import TEST_CAMERAS, TimedPolicyConfig
from vla.client.clock import RealClock
from vla.client.controller import Controller, ControlSettings
from vla.client.safety import SafetyLayer
from vla.client.session import run_episodes, wait_connected
from vla.client.ticklog import TickLog
from vla.client.worker import InferenceWorker
from vla.testing.policies import TimedPolicy
from vla_so101_description.description import SO101


class Balancer:
    """A Service's address on loopback: each new connection goes to the next endpoint of
    ``order`` (then round robin), and its bytes never move to another endpoint."""

    def __init__(self, ports: list[int], order: list[int]):
        self.ports, self.order = ports, list(order)
        self.down: set[int] = set()
        self.routed: list[tuple[int, bool]] = []  # (endpoint, reached it) per connection, in order
        self._open: dict[int, list] = {i: [] for i in range(len(ports))}
        self._turn = 0
        self.loop = asyncio.new_event_loop()
        started = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)
            self.server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert started.wait(10)
        self.url = f"ws://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    def _pick(self) -> int:
        i = self.order[self._turn] if self._turn < len(self.order) else self._turn % len(self.ports)
        self._turn += 1
        return i

    async def _handle(self, reader, writer):
        i = self._pick()
        if i in self.down:  # the pod is gone but its endpoint is still listed
            self.routed.append((i, False))
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.ports[i])
        self.routed.append((i, True))
        self._open[i].append((writer, up_writer))

        async def pipe(src, dst):
            try:
                while data := await src.read(1 << 16):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def _cut(self, i: int) -> None:
        self.down.add(i)
        for client_side, server_side in self._open[i]:
            client_side.transport.abort()  # RST, as when the pod's process dies
            server_side.transport.abort()

    def take_down(self, i: int) -> None:
        self.loop.call_soon_threadsafe(self._cut, i)

    def close(self):
        def shut():
            self.server.close()
            for i in self._open:  # no connection left for the replicas to wait on
                self._cut(i)
            self.loop.call_soon(self.loop.stop)

        self.loop.call_soon_threadsafe(shut)
        self.thread.join(5)


def test_an_episode_survives_its_replica_going_away(policy_server, arm_factory):
    replicas = [TimedPolicy(TimedPolicyConfig(batch_cost_ms=20.0, horizon=40, step=0.002)) for _ in range(2)]
    servers = [policy_server(p) for p in replicas]
    # The first connection goes to replica 0; the first reconnect finds replica 0's endpoint
    # still listed (refused), the next reaches replica 1.
    service = Balancer([s.server.port for s in servers], order=[0, 0, 1])
    arm = arm_factory(cameras=TEST_CAMERAS)
    clock = RealClock()
    log = TickLog(None, t0=clock.now())
    log.records = []
    safety = SafetyLayer(SO101.default_safety(), arm.joint_names, arm.forward_kinematics)
    controller = Controller(arm, safety, ControlSettings(30.0, merge="rtc"), clock, log, task="failover", session="t")
    worker = InferenceWorker(service.url, connect_timeout_s=2.0, max_backoff_s=0.25).start()
    marks = {}

    def pod_goes_away():
        time.sleep(1.5)
        marks["calls_before"] = replicas[0].calls
        marks["cut"] = clock.now() - log.t0
        service.take_down(0)

    chaos = threading.Thread(target=pod_goes_away, daemon=True)
    try:
        wait_connected(controller, worker, clock, 10.0)
        chaos.start()
        [episode] = run_episodes(arm, controller, worker, clock, task="failover", episodes=1, episode_s=5.0)
    finally:
        chaos.join(10)
        worker.stop()
        service.close()

    assert not episode.interrupted and episode.counts["disconnects"] == 1
    # one connection per replica reached it; the dead replica's stale endpoint refused one in between
    assert service.routed[:3] == [(0, True), (0, False), (1, True)] and len(service.routed) == 3
    # replica 0 answered everything until it went away and nothing after; replica 1 took over
    assert marks["calls_before"] >= 3 and replicas[0].calls == marks["calls_before"]
    assert replicas[1].calls >= 5

    events = [r for r in log.records if r["type"] == "event"]
    [lost] = [e for e in events if e["event"] == "disconnected"]
    back = [e for e in events if e["event"] == "connected" and e["t"] > lost["t"]]
    assert back and any(e["event"] == "connect_failed" and lost["t"] < e["t"] < back[0]["t"] for e in events)
    assert lost["t"] - marks["cut"] < 0.5
    print(f"held {back[0]['t'] - lost['t']:.3f} s between losing replica 0 and reaching replica 1")
    assert back[0]["t"] - lost["t"] < 1.0  # the arm waited well under a second for the other replica

    ticks = [r for r in log.records if r["type"] == "tick"]
    during = [t for t in ticks if lost["t"] <= t["t"] < back[0]["t"]]
    assert during and all(t["hold"] for t in during)
    assert len({tuple(t["command"]) for t in during}) == 1  # one position held throughout
    resumed = [t for t in ticks if t["t"] > back[0]["t"] and not t["hold"]]
    assert len(resumed) >= 45  # most of the rest of the episode ran on replica 1
    executed = [t for t in ticks if not t["hold"]]
    assert all(t["t_exec"] <= t["deadline"] for t in executed)  # never a stale action, across the switch


@pytest.fixture(autouse=True)
def _quiet_asyncio_errors(caplog):
    # the relay's aborted transports are the point of the test, not a failure
    caplog.set_level("CRITICAL", logger="asyncio")
