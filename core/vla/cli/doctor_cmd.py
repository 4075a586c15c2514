"""`vla doctor`: the checks a lab engineer runs before bringing an arm up."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import urllib.error
import urllib.request

import click

from vla.cli.common import lab_config
from vla.config import ConfigError, LoadedConfig, load_arm, load_safety


def _health(url: str, timeout: float = 2.0) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return True, response.read(200).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return False, str(exc)


@click.command()
@click.option("--network/--no-network", default=True, help="Also ask the policy server and rewarder for their health.")
# Deployment against training (vla.matching): given --dataset, doctor runs those checks instead.
@click.option("--dataset", default=None, type=click.Path(file_okay=False),
              help="The LeRobot dataset the policy was trained on: compare the deployment with it (and nothing else).")
@click.option("--checkpoint", default=None, type=click.Path(), help="With --dataset: the checkpoint trained on it.")
@click.option("--policy-url", default=None, help="With --dataset: a policy server to read the policy's contract from.")
@click.option("--arm", "arm_id", default=None, help="With --dataset: the arm to read (joints, camera frames, settings).")
@click.option("--robot", "robot_name", default=None, help="With --dataset: a robot plugin to read instead of an arm file.")
@click.option("--task", default=None, help="With --dataset: the task text the deployment will send.")
@click.option("--episodes", default=None, type=click.Path(file_okay=False),
              help="With --dataset: an eval recording (LeRobot dataset of deployed episodes).")
@click.option("--json", "as_json", is_flag=True, help="With --dataset: print the report as JSON (see the README).")
@click.option("--report", "report_dir", default=None, type=click.Path(file_okay=False),
              help="With --dataset: write an HTML page (numbers, frames, histograms) into this folder.")
@click.pass_context
def doctor(ctx: click.Context, network: bool, dataset, checkpoint, policy_url, arm_id, robot_name, task, episodes,
           as_json, report_dir) -> None:
    """Check Python, the lab config, arm and safety files, plugins, and the GPU host's services.

    With --dataset: check that the deployment matches the training instead (task text, cameras,
    start state, training length, chunking, actions and units, rates); exit 1 when a check fails.
    """
    if dataset:
        from vla.matching.cli import doctor_dataset

        return doctor_dataset(ctx, dataset=dataset, checkpoint=checkpoint, policy_url=policy_url, arm_id=arm_id,
                              robot_name=robot_name, task=task, episodes=episodes, as_json=as_json,
                              report_dir=report_dir)
    used = [f"--{n}" for n, v in (("checkpoint", checkpoint), ("policy-url", policy_url), ("arm", arm_id),
                                  ("robot", robot_name), ("task", task), ("episodes", episodes), ("json", as_json),
                                  ("report", report_dir)) if v]
    if used:
        raise click.UsageError(f"{', '.join(used)} only go with --dataset")
    from rich.console import Console

    console = Console()
    failed = 0

    def report(ok: bool | None, what: str, detail: str = "") -> None:
        nonlocal failed
        mark = {True: "[green]ok[/green]", False: "[red]FAIL[/red]", None: "[yellow]warn[/yellow]"}[ok]
        failed += ok is False
        console.print(f"{mark:>20}  {what}" + (f": {detail}" if detail else ""), soft_wrap=True, highlight=False)

    report(sys.version_info >= (3, 10), "python", sys.version.split()[0])
    loaded = lab_config(ctx)
    report(True, "lab config", str(loaded.path or "none found, using defaults"))

    from vla.plugins import get_registry

    registry = get_registry()
    for plugin in registry.plugins:
        report(True, f"plugin {plugin.distribution}", plugin.version)
    for failure in registry.failures:
        report(False, f"plugin {failure.distribution}", failure.error)
    for arm_id in loaded.config.arms:
        for ok, detail in check_arm(loaded, arm_id):
            report(ok, f"arm {arm_id}", detail)

    for module, why in (("cv2", "JPEG frames and colour rewards"), ("mujoco", "the simulated arm"), ("lerobot", "the real SO-101, recording, training")):
        found = importlib.util.find_spec(module) is not None
        report(True if found else None, f"python module {module}", "installed" if found else f"missing ({why})")
    report(True if shutil.which("docker") else None, "docker", shutil.which("docker") or "not found (needed only on the GPU host)")

    if network:
        policy_http = loaded.config.policy_server.resolved_url().replace("ws://", "http://").replace("wss://", "https://")
        ok, detail = _health(policy_http.rstrip("/") + "/healthz")
        report(ok if ok else None, f"policy server {policy_http}", _summary(detail))
        rewarder = loaded.config.rewarder.resolved_url()
        ok, detail = _health(rewarder.rstrip("/") + "/healthz")
        report(ok if ok else None, f"rewarder {rewarder}", _summary(detail))
    if failed:
        raise SystemExit(1)


def check_arm(loaded: LoadedConfig, arm_id: str) -> list[tuple[bool | None, str]]:
    """What `vla run --arm ARM_ID` would find wrong before it moves: the arm file, its robot plugin,
    the ``config:`` section through that plugin's own config class, and the safety file against the
    robot's joints. Things only the hardware can settle (a serial port not plugged in) are warnings."""
    from vla.client.safety import SafetyConfigError, SafetyLayer
    from vla.client.setup import load_robot_config
    from vla.description import NoDescription
    from vla.plugins import PluginError, UnknownComponent, get_spec

    try:
        arm, arm_path = load_arm(loaded, arm_id)
    except ConfigError as exc:
        return [(False, str(exc))]
    try:
        spec = get_spec("robots", arm.robot)
    except (UnknownComponent, PluginError) as exc:
        return [(False, f"{arm_path}: robot: {exc}")]
    try:
        config = load_robot_config(spec, loaded, arm, arm_path)
    except ConfigError as exc:
        return [(False, str(exc))]
    try:
        description = spec.load_description()
    except NoDescription:
        description = None
    found: list[tuple[bool | None, str]] = []
    joints = description.joint_names if description is not None else None
    if arm.safety:
        safety_path = (arm_path.parent / arm.safety).resolve()
        try:
            safety = load_safety(safety_path)
        except ConfigError as exc:
            return [(False, str(exc))]
        source = arm.safety
    elif description is not None:
        safety, source = description.default_safety(), f"the {description.name} description's defaults"
        found.append((None, f"no safety file: {source} apply"))
    else:
        return [(False, f"{arm_path}: robot {arm.robot!r} has no description, so the arm file must name a safety file")]
    if joints is not None:
        fk = description.kinematics.forward_kinematics
        try:
            SafetyLayer(safety, joints, fk if safety.workspace is not None else None)
        except SafetyConfigError as exc:
            return [(False, f"safety limits {source} do not fit robot {arm.robot!r}: {exc}")]
        wider = [j for j, (lo, hi) in description.limits_by_name().items()
                 if j in safety.joints and (safety.joints[j].min < lo - 1e-9 or safety.joints[j].max > hi + 1e-9)]
        if wider:
            found.append((None, f"safety limits {source} go beyond the {description.name}'s own range for "
                                f"{', '.join(wider)} (the servos stop there anyway)"))
    warnings = getattr(config, "warnings", None)
    for warning in (warnings() if callable(warnings) else []):
        found.append((None, warning))
    found.insert(0, (True, f"robot {arm.robot}, config checked by {spec.config.__name__ if spec.config else 'no config class'}"
                           f", safety {source}"))
    return found


def _summary(text: str) -> str:
    try:
        return str(json.loads(text).get("status", text))
    except (ValueError, AttributeError):
        return text[:120]
