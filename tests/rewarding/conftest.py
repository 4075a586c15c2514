"""Fixtures for the rewarder tests: a real HTTP rewarder service on a loopback port."""

from __future__ import annotations

import contextlib

import pytest

from vla.rewarding.service import RewarderService, RunningService


@contextlib.contextmanager
def running(build, name="test", wait=True, **kwargs):
    """Serve the rewarder ``build()`` returns on 127.0.0.1 (a free port) for the block."""
    service = RewarderService(name, build, **kwargs)
    with RunningService(service) as srv:
        if wait:
            assert service.wait_loaded(30)
        yield srv


@pytest.fixture
def serve():
    return running


@pytest.fixture(scope="session")
def heuristic():
    from vla_heuristic.rewarder import HeuristicRewarder

    return HeuristicRewarder()
