"""Building what a session drives: the robot from its plugin and arm file, its safety limits, and
the control settings, with lab-config defaults and errors that name the file and the key.

An arm id is a promise: the arm's own file says which robot plugin drives it, with which
settings and which safety file. So an arm that vla.yaml does not list is an error, and so is
a ``--robot`` that disagrees with the arm's file.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from vla.client.controller import ControlSettings, RunError
from vla.client.safety import SafetyConfigError, SafetyLayer
from vla.config import ArmConfig, ConfigError, LoadedConfig, SafetyConfig, load_arm, load_safety, relative_to, structure


class SetupError(RunError):
    """The session cannot start as configured (exit code 2): a bad arm, robot or safety file."""


@attrs.define
class RobotSetup:
    robot: object
    robot_name: str
    arm_id: str | None
    safety: SafetyLayer
    safety_source: str
    description: object | None = None  # the robot's vla.description.RobotDescription, if it has one
    arm_path: Path | None = None


def load_robot_config(spec, loaded: LoadedConfig, arm: ArmConfig | None, arm_path: Path | None):
    """The robot plugin's config: from the arm file's ``config:`` (through the plugin's own config
    class, paths relative to the arm file) or else from vla.yaml's ``plugins.<robot>``."""
    if spec.config is None:
        return None
    if arm is not None:
        return relative_to(structure(spec.config, arm.config, str(arm_path), "config"), arm_path.parent)
    return loaded.plugin_config(spec)


def build_robot(loaded: LoadedConfig, robot_name: str | None, arm_id: str | None, safety_path: str | None = None) -> RobotSetup:
    from vla.description import NoDescription
    from vla.plugins import PluginError, UnknownComponent, get_spec

    arm: ArmConfig | None = None
    arm_path: Path | None = None
    if arm_id:
        try:
            arm, arm_path = load_arm(loaded, arm_id)
        except ConfigError as exc:
            raise SetupError(f"--arm {arm_id}: {exc}") from None
        if robot_name and robot_name != arm.robot:
            raise SetupError(
                f"--arm {arm_id}: its file {arm_path} says robot {arm.robot!r}, not {robot_name!r} "
                f"(drop --robot, or choose another arm)"
            )
    robot_name = robot_name or (arm.robot if arm else None)
    if not robot_name:
        raise SetupError("no robot given: pass --robot NAME, or --arm ARM_ID (or ARM_ID=...) with an arm file in vla.yaml")
    try:
        spec = get_spec("robots", robot_name)
    except (UnknownComponent, PluginError) as exc:
        raise SetupError(str(exc)) from None
    try:
        config = load_robot_config(spec, loaded, arm, arm_path)
    except ConfigError as exc:
        raise SetupError(f"bad robot configuration: {exc}") from None
    try:
        description = spec.load_description()
    except NoDescription:
        description = None
    robot = spec.build(config)
    description = getattr(robot, "description", None) or description

    safety_config, source = _safety_config(robot_name, description, arm, arm_path, safety_path)
    fk = description.kinematics.forward_kinematics if description is not None else getattr(robot, "forward_kinematics", None)
    try:
        safety = SafetyLayer(safety_config, tuple(robot.joint_names), fk if safety_config.workspace is not None else None)
    except SafetyConfigError as exc:
        raise SetupError(f"safety limits from {source} do not fit robot {robot_name!r}: {exc}") from None
    return RobotSetup(robot, robot_name, arm_id, safety, source, description, arm_path)


def _safety_config(robot_name, description, arm, arm_path, safety_path) -> tuple[SafetyConfig, str]:
    try:
        if safety_path:
            return load_safety(safety_path), str(safety_path)
        if arm is not None and arm.safety:
            path = (arm_path.parent / arm.safety).resolve()
            return load_safety(path), str(path)
    except ConfigError as exc:
        raise SetupError(f"bad safety limits: {exc}") from None
    if description is not None:
        return description.default_safety(), f"the {description.name} description's default limits"
    raise SetupError(
        f"robot {robot_name!r} has no robot description and no safety limits: pass --safety FILE or an "
        f"--arm whose file names one"
    )


def control_settings(loaded: LoadedConfig, robot, merge: str | None = None, control_hz: float | None = None,
                     actions_per_chunk: int | None = None, threshold: float | None = None,
                     jpeg_quality: int | None = None) -> ControlSettings:
    client = loaded.config.client
    try:
        return ControlSettings(
            control_hz=float(control_hz or client.control_hz or robot.control_hz),
            actions_per_chunk=int(actions_per_chunk or client.actions_per_chunk),
            chunk_size_threshold=float(client.chunk_size_threshold if threshold is None else threshold),
            merge=merge or client.merge,
            jpeg_quality=jpeg_quality or client.jpeg_quality,
        )
    except ValueError as exc:
        raise SetupError(str(exc)) from None


def build_adapter(loaded: LoadedConfig, policy_name: str | None):
    """The client adapter a policy plugin declares, built with that plugin's lab config (or None)."""
    if not policy_name:
        return None
    from vla.plugins import PluginError, UnknownComponent, get_spec
    from vla.specs import SpecError

    try:
        spec = get_spec("policies", policy_name)
        return spec.build_client_adapter(loaded.plugin_config(spec))
    except (UnknownComponent, PluginError, SpecError) as exc:
        raise SetupError(f"--adapter {policy_name}: {exc}") from None
    except ConfigError as exc:
        raise SetupError(f"bad configuration for {policy_name}: {exc}") from None
