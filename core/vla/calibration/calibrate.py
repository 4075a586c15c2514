"""One camera calibration from start to end: what `vla calibrate camera` runs (and the tests).

1. the marker: the robot shows it itself if it can (the simulator), else the operator has
   fixed a ball of the marker colour on the tool point;
2. the poses: from the robot description, spread over the region a front camera sees, each
   within the safety limits; the arm goes home first, visits them, and goes home again;
3. at each pose one frame, the marker's centroid, and the tool point by forward kinematics;
4. the camera: intrinsics given, from the robot, or estimated; the pose by solvePnP (RANSAC).
"""

from __future__ import annotations

import collections
from typing import Callable

import attrs
import numpy as np

from vla.calibration.camera import CameraCalibration
from vla.calibration.marker import MAGENTA, MarkerColor
from vla.calibration.poses import PoseRegion, calibration_poses, travel_plan
from vla.calibration.procedure import CalibrationDriver, CalibrationRunError, MoveSettings, Sighting  # noqa: F401 (raised from here)
from vla.calibration.solver import CalibrationError, Solution, solve_camera

DEFAULT_POSES = 30
DEFAULT_MIN_SIGHTINGS = 12


class NotEnoughSightings(CalibrationError):
    """The marker was seen in too few poses to solve the camera."""


class CalibrationStopped(RuntimeError):
    """The operator stopped the calibration; the arm holds its last safe command."""


@attrs.frozen
class CalibrationResult:
    solution: Solution
    sightings: list[Sighting]
    poses: int  # calibration poses visited
    intrinsics: str  # "given", "robot" or "estimated"
    safety_counts: dict

    @property
    def calibration(self) -> CameraCalibration:
        return self.solution.calibration

    @property
    def used(self) -> list[Sighting]:
        return [s for s in self.sightings if s.detection.found]


def _reasons(sightings: list[Sighting]) -> str:
    counts = collections.Counter(s.detection.reason.split(":")[0].split(" (")[0] for s in sightings if not s.detection.found)
    return "; ".join(f"{n} x {reason}" for reason, n in counts.most_common())


def robot_intrinsics(robot, camera: str):
    """The robot's own intrinsics for ``camera`` (the simulator knows them), else None."""
    method = getattr(robot, "camera_intrinsics", None)
    return None if method is None else np.asarray(method(camera), dtype=np.float64)


def calibrate_camera(
    robot,
    safety,
    description,
    camera: str = "front",
    *,
    clock=None,
    control_hz: float | None = None,
    n_poses: int = DEFAULT_POSES,
    min_sightings: int = DEFAULT_MIN_SIGHTINGS,
    K=None,
    move: MoveSettings = MoveSettings(),
    region: PoseRegion = PoseRegion(),
    color: MarkerColor = MAGENTA,
    marker_offset=None,
    seed: int = 0,
    estimate_intrinsics: bool = False,
    on_sighting: Callable[[Sighting, int], None] | None = None,
    on_frame: Callable[[Sighting, np.ndarray], None] | None = None,
    stop: Callable[[], bool] = lambda: False,
) -> CalibrationResult:
    """Calibrate ``camera`` of a connected ``robot``; every command passes ``safety``.

    Intrinsics: ``K`` when given, else the robot's own (``robot.camera_intrinsics(camera)``, the
    simulator's), else (or with ``estimate_intrinsics``) estimated from the sightings.

    Raises ``NotEnoughSightings`` when the marker was found in fewer than ``min_sightings``
    poses, ``CalibrationError`` when no camera fits what was seen, ``CalibrationRunError`` when
    the arm cannot be calibrated as configured (no such camera, no description)."""
    if clock is None:
        from vla.client.clock import RealClock

        clock = RealClock()
    hz = float(control_hz or robot.control_hz)
    driver = CalibrationDriver(robot, safety, description, camera, clock, hz, move, color, marker_offset)
    intrinsics = "given"
    if K is None and not estimate_intrinsics:
        K = robot_intrinsics(robot, camera)
        intrinsics = "robot" if K is not None else "estimated"
    height, width = robot.cameras[camera][:2]

    poses = calibration_poses(description, safety, n_poses, region, seed)
    home = np.asarray(description.home, dtype=np.float64)
    plan = travel_plan(description, home, poses, region, safety)
    sightings: list[Sighting] = []
    index = 0
    driver.move_to(home, stop)
    try:
        for q, is_pose in plan:
            if stop():
                break
            reached = driver.move_to(q, stop)
            if stop():
                break
            if not is_pose:
                continue
            sighting = driver.sight(index, reached)
            index += 1
            sightings.append(sighting)
            if on_sighting is not None:
                on_sighting(sighting, len(plan))
            if on_frame is not None:
                on_frame(sighting, driver.last_image)
    finally:
        if not stop():
            driver.move_to(home, stop)
    if stop():
        raise CalibrationStopped(
            f"stopped after {index} of {sum(1 for _, p in plan if p)} poses; the arm holds its last safe position"
        )

    used = [s for s in sightings if s.detection.found]
    if len(used) < min_sightings:
        why = _reasons(sightings)
        raise NotEnoughSightings(
            f"the marker was seen in {len(used)} of {len(sightings)} poses; at least {min_sightings} are needed"
            + (f" (the others: {why})" if why else "")
            + f". Check that a {color_name(color)} marker sits on the tool point, is in camera {camera!r}'s view "
            "and is the only thing of that colour there; `--frames DIR` saves what the camera saw"
        )
    solution = solve_camera(
        [s.tool for s in used], [s.detection.uv for s in used], width, height, camera, K=K,
    )
    return CalibrationResult(solution, sightings, index, intrinsics if K is not None else "estimated",
                             dict(safety.counts))


def color_name(color: MarkerColor) -> str:
    return "magenta" if color == MAGENTA else f"hue-{color.hue}"
