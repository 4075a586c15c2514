"""Fixtures for the client tests: the kinematic test arm, and the control loop on simulated time."""

from __future__ import annotations

import numpy as np
import pytest

from vla.builtins import KinematicArmConfig
from vla.client.clock import SimulatedClock
from vla.client.controller import Controller, ControlSettings
from vla.client.safety import SafetyLayer
from vla.client.session import wait_connected
from vla.client.simlink import SimulatedLink
from vla.client.ticklog import TickLog
from vla.testing.policies import ChunkList
from vla.testing.kinematic import KinematicArm
from vla_so101_description.description import SO101


def make_arm(cameras=None, initial_q=None, control_hz=30.0) -> KinematicArm:
    arm = KinematicArm(
        KinematicArmConfig(
            control_hz=control_hz,
            cameras={} if cameras is None else cameras,
            initial_q=[0.0] * 6 if initial_q is None else list(initial_q),
        ),
        SO101,
    )
    arm.connect()
    return arm


class SimRig:
    """Controller + arm + simulated link on a simulated clock, with the log kept in memory."""

    def __init__(self, backend, merge="rtc", latency_s=0.1, down=(), actions_per_chunk=40, threshold=0.6,
                 arm=None, safety=None, hz=30.0, metadata=None):
        self.clock = SimulatedClock(100.0)
        self.arm = arm or make_arm(control_hz=hz)
        self.safety = safety or SafetyLayer(SO101.default_safety(), self.arm.joint_names, self.arm.forward_kinematics)
        self.log = TickLog(None, t0=self.clock.now())
        self.log.records = []
        self.settings = ControlSettings(hz, actions_per_chunk=actions_per_chunk, chunk_size_threshold=threshold,
                                        merge=merge)
        self.controller = Controller(self.arm, self.safety, self.settings, self.clock, self.log, task="test")
        latency = latency_s if callable(latency_s) else (lambda: latency_s)
        self.link = SimulatedLink(backend, self.clock, latency, down=down, metadata=metadata)
        wait_connected(self.controller, self.link, self.clock, 5.0)

    def records(self, kind):
        return [r for r in self.log.records if r["type"] == kind]

    def run(self, seconds, episodes=1, **kwargs):
        from vla.client.session import run_episodes

        return run_episodes(self.arm, self.controller, self.link, self.clock, task="test", episodes=episodes,
                            episode_s=seconds, **kwargs)


@pytest.fixture
def sim_rig():
    return SimRig


@pytest.fixture
def chunk_list():
    return ChunkList


@pytest.fixture
def arm_factory():
    return make_arm


def ramp(start, step, n):
    """(n, 6) targets moving every joint by ``step`` per tick from ``start``."""
    return np.asarray(start, float) + step * np.arange(1, n + 1)[:, None] * np.ones(6)


class ServerThread:
    """The real policy server (``vla.serving.server.PolicyServer``) on a loopback port, in a thread."""

    def __init__(self, backend, port: int = 0, **kwargs):
        import asyncio
        import threading

        from vla.serving.server import PolicyServer

        self.loop = asyncio.new_event_loop()
        self.server = PolicyServer(backend, host="127.0.0.1", port=port, **kwargs)
        ready = threading.Event()

        def serve():
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.server.start())
            self.loop.run_until_complete(self.server.wait_settled(30))
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()
        assert ready.wait(30), "policy server did not start"
        self.url = f"ws://127.0.0.1:{self.server.port}"

    def stop(self):
        import asyncio

        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def policy_server():
    servers = []

    def start(backend, **kwargs):
        servers.append(ServerThread(backend, **kwargs))
        return servers[-1]

    yield start
    for s in servers:
        s.stop()


@pytest.fixture
def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
