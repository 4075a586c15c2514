"""Everything one comparison reads: the training dataset, the checkpoint, the deployment.

Checks also leave pictures here (``artifacts``) for the HTML report: frames side by side and
the arrays behind the histograms. They never go into the JSON output.
"""

from __future__ import annotations

from typing import Any

import attrs

from vla.matching.checkpoint import CheckpointInfo
from vla.matching.dataset import LeRobotDatasetReader
from vla.matching.deployment import Deployment


@attrs.define
class MatchInputs:
    dataset: LeRobotDatasetReader
    deployment: Deployment
    checkpoint: CheckpointInfo | None = None
    artifacts: dict[str, Any] = attrs.field(factory=dict)
    # dataset camera -> deployment camera, worked out by the camera names check for the identity check
    camera_pairs: dict[str, str] | None = None
