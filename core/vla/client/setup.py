"""Building what `vla run` and `vla eval` drive: the robot from its plugin and arm file, its
safety limits, and the control settings, with lab-config defaults and clear errors."""

from __future__ import annotations

from pathlib import Path

import attrs

from vla.client.controller import ControlSettings, RunError
from vla.client.safety import SafetyConfigError, SafetyLayer
from vla.config import (
    SO101_JOINT_LIMITS,
    ArmConfig,
    ConfigError,
    LoadedConfig,
    SafetyConfig,
    load_arm,
    load_safety,
    relative_to,
    so101_safety,
    structure,
)


@attrs.define
class RobotSetup:
    robot: object
    robot_name: str
    arm_id: str | None
    safety: SafetyLayer
    safety_source: str


def build_robot(loaded: LoadedConfig, robot_name: str | None, arm_id: str | None, safety_path: str | None = None) -> RobotSetup:
    from vla.plugins import PluginError, UnknownComponent, get_spec

    arm: ArmConfig | None = None
    arm_path: Path | None = None
    if arm_id:
        try:
            arm, arm_path = load_arm(loaded, arm_id)
        except ConfigError as exc:
            # an arm id that the lab config does not list is only a label for the logs
            if robot_name is None or exc.key != f"arms.{arm_id}" or "no such arm" not in exc.problem:
                raise RunError(str(exc)) from None
    robot_name = robot_name or (arm.robot if arm else None)
    if not robot_name:
        raise RunError("no robot given: pass --robot NAME, or --arm ARM_ID with an arm file in vla.yaml")
    try:
        spec = get_spec("robots", robot_name)
    except (UnknownComponent, PluginError) as exc:
        raise RunError(str(exc)) from None
    try:
        if arm is not None and arm.robot == robot_name and spec.config is not None:
            config = relative_to(structure(spec.config, arm.config, str(arm_path), "config"), arm_path.parent)
        else:
            config = loaded.plugin_config(spec)
    except ConfigError as exc:
        raise RunError(f"bad robot configuration: {exc}") from None
    robot = spec.build(config)

    safety_config, source = _safety_config(robot, robot_name, arm, arm_path, safety_path)
    fk = getattr(robot, "forward_kinematics", None)
    try:
        safety = SafetyLayer(safety_config, tuple(robot.joint_names), fk if safety_config.workspace is not None else None)
    except SafetyConfigError as exc:
        raise RunError(f"safety limits from {source} do not fit robot {robot_name!r}: {exc}") from None
    return RobotSetup(robot, robot_name, arm_id, safety, source)


def _safety_config(robot, robot_name, arm, arm_path, safety_path) -> tuple[SafetyConfig, str]:
    try:
        if safety_path:
            return load_safety(safety_path), str(safety_path)
        if arm is not None and arm.safety:
            path = (arm_path.parent / arm.safety).resolve()
            return load_safety(path), str(path)
    except ConfigError as exc:
        raise RunError(f"bad safety limits: {exc}") from None
    if tuple(robot.joint_names) == tuple(SO101_JOINT_LIMITS):
        return so101_safety(), "the built-in SO-101 limits"
    raise RunError(
        f"robot {robot_name!r} has no safety limits: pass --safety FILE or an --arm whose file names one"
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
        raise RunError(str(exc)) from None


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
        raise RunError(f"--adapter {policy_name}: {exc}") from None
    except ConfigError as exc:
        raise RunError(f"bad configuration for {policy_name}: {exc}") from None
