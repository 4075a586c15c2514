"""The checks, in the order a lab engineer reads them. Each takes the ``MatchInputs`` and returns one ``Check``."""

from __future__ import annotations

from vla.matching.checks.actions import check_actions, check_units
from vla.matching.checks.cameras import check_camera_identity, check_cameras
from vla.matching.checks.chunking import check_action_jumps, check_chunking
from vla.matching.checks.rates import check_rates
from vla.matching.checks.start_state import check_start_state
from vla.matching.checks.task import check_task
from vla.matching.checks.training import check_training_length

ALL_CHECKS = (
    check_task,
    check_cameras,
    check_camera_identity,
    check_start_state,
    check_training_length,
    check_chunking,
    check_action_jumps,
    check_actions,
    check_units,
    check_rates,
)
CHECK_NAMES = ("task", "cameras", "camera_identity", "start_state", "training_length", "chunking", "action_jumps",
               "actions", "units", "rates")
# The checks `vla run --preflight` runs: none of them needs an eval recording.
PREFLIGHT_CHECKS = ("task", "cameras", "camera_identity", "start_state", "training_length", "chunking", "units",
                    "rates")
