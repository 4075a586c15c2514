"""Test doubles for the SO-101 plugin and for plugins built on it (the SO-100): not used at run time.

``FakeFeetechBus`` emulates a chain of Feetech STS3215 servos behind a pseudo-terminal, so that
LeRobot's real ``FeetechMotorsBus`` and the Feetech SDK can be tested without an arm.
"""

from vla_so101.testing.feetech_bus import FakeFeetechBus

__all__ = ["FakeFeetechBus"]
