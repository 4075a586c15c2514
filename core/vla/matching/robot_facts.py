"""The robot facts the checks need — joint names, limits, the gripper's closed and open angles — from
the robot's description (``vla.description.RobotDescription``, published by issue 10).

This is the one place that reaches for them. A robot object built from a description carries it
(``robot.description``); otherwise the robot plugin's description is looked up by name, and with
no robot at all (`vla doctor --dataset` alone) the first installed description whose joint names
are the dataset's stands in.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class RobotFacts:
    name: str
    joint_names: tuple[str, ...]
    limits: tuple[tuple[float, float], ...]  # radians, joint_names order
    gripper_joint: str | None
    gripper_closed: float | None  # radians
    gripper_open: float | None

    def index(self, joint: str) -> int:
        return self.joint_names.index(joint)

    @property
    def gripper_index(self) -> int | None:
        return self.joint_names.index(self.gripper_joint) if self.gripper_joint in self.joint_names else None

    def gripper_fraction(self, value):
        """0 closed .. 1 open for gripper angles in radians (numpy arrays too)."""
        return (value - self.gripper_closed) / (self.gripper_open - self.gripper_closed)


def from_description(description) -> RobotFacts:
    gripper = getattr(description, "gripper", None)
    return RobotFacts(
        name=str(description.name),
        joint_names=tuple(description.joint_names),
        limits=tuple((float(lo), float(hi)) for lo, hi in description.limits),
        gripper_joint=gripper.joint if gripper is not None else None,
        gripper_closed=float(gripper.closed) if gripper is not None else None,
        gripper_open=float(gripper.open) if gripper is not None else None,
    )


def robot_facts(robot=None, robot_name: str | None = None, joint_names=None) -> RobotFacts | None:
    """The facts for a robot object, a robot plugin's name, or (last resort) a list of joint names."""
    description = getattr(robot, "description", None)
    if description is None and robot_name:
        from vla.description import get_description

        try:
            description = get_description(robot_name)
        except LookupError:
            description = None
    if description is not None:
        return from_description(description)
    names = tuple(getattr(robot, "joint_names", None) or joint_names or ())
    return _matching_description(names)


def bare_joint_name(name: str) -> str:
    """A joint's name without the ``.pos`` suffix that LeRobot's drivers add to dataset features."""
    return name[:-4] if name.endswith(".pos") else name


def _matching_description(names: tuple[str, ...]) -> RobotFacts | None:
    """With no robot named, the first installed robot description whose joints are these (a dataset's)."""
    if not names:
        return None
    from vla.plugins import get_registry

    wanted = tuple(bare_joint_name(n) for n in names)
    for entry in get_registry().components.get("robots", {}).values():
        try:
            description = entry.spec.load_description()
        except Exception:  # a plugin without a description, or one that fails to import: not this one
            continue
        if description is not None and tuple(description.joint_names) == wanted:
            return from_description(description)
    return None
