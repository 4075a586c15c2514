"""Fixtures for the heuristic rewarder's tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def heuristic():
    from vla_heuristic.rewarder import HeuristicRewarder

    return HeuristicRewarder()
