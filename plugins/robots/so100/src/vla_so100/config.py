"""Per-arm settings of an SO-100: the same fields as the SO-101's (same bus, same driver)."""

from __future__ import annotations

import attrs

from vla_so101.config import STARTER_CONFIG, SO101Config


@attrs.define
class SO100Config(SO101Config):
    """An SO-100 follower arm: its serial port, calibration id, cameras and control rate."""

    id: str = "so100"


def starter_arm_config(arm_id: str) -> str:
    """The ``config:`` of a new arm file (`vla init --robot so100`)."""
    return STARTER_CONFIG.format(arm=arm_id)
