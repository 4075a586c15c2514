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
from vla.testing.server_thread import ServerThread
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
