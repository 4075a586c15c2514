"""Gather the inputs from what `vla doctor --dataset` was given, and run the checks into a report."""

from __future__ import annotations

from pathlib import Path

from vla.matching.checkpoint import CheckpointError, CheckpointInfo, fetch_metadata, from_metadata, read_checkpoint
from vla.matching.checks import ALL_CHECKS, CHECK_NAMES
from vla.matching.dataset import DatasetError, LeRobotDatasetReader
from vla.matching.deployment import Deployment, read_live, task_text
from vla.matching.inputs import MatchInputs
from vla.matching.results import FAIL, Check, MatchReport
from vla.matching.robot_facts import robot_facts


class MatchSetupError(ValueError):
    """An input cannot be read (dataset, checkpoint, arm, policy server); the message names it."""


def run_checks(inputs: MatchInputs, only: tuple[str, ...] | None = None) -> MatchReport:
    """Every check (or those named in ``only``), in order. A check whose data cannot be read fails, saying why."""
    checks = []
    for name, check in zip(CHECK_NAMES, ALL_CHECKS):
        if only is not None and name not in only:
            continue
        try:
            checks.append(check(inputs))
        except (DatasetError, OSError, ValueError) as exc:
            checks.append(Check(name, FAIL, f"could not check: {exc}", {"error": str(exc)}))
    ds = inputs.dataset
    dataset = {"path": str(ds.root), "episodes": ds.total_episodes, "frames": ds.total_frames, "fps": ds.fps,
               "tasks": ds.tasks, "cameras": {k: list(v) for k, v in ds.cameras.items()}, "robot_type": ds.robot_type,
               "joints": ds.names("action")}
    checkpoint = inputs.checkpoint.to_json() if inputs.checkpoint is not None else None
    return MatchReport(checks, dataset, checkpoint, inputs.deployment.describe(), artifacts=inputs.artifacts)


def open_dataset(path: str | Path, what: str = "--dataset") -> LeRobotDatasetReader:
    try:
        reader = LeRobotDatasetReader(path)
        reader.episodes  # noqa: B018  (read now, so a broken folder is named here)
        return reader
    except DatasetError as exc:
        raise MatchSetupError(f"{what}: {exc}") from None


def gather(loaded, dataset: str, *, checkpoint: str | None = None, policy_url: str | None = None,
           arm_id: str | None = None, robot_name: str | None = None, task: str | None = None,
           episodes: str | None = None) -> MatchInputs:
    """The inputs for the checks. Connects to the arm (reading joints and frames, commanding
    nothing) when ``arm_id`` or ``robot_name`` is given, and to the policy server for ``policy_url``."""
    ds = open_dataset(dataset)
    ckpt: CheckpointInfo | None = None
    if checkpoint:
        try:
            ckpt = read_checkpoint(checkpoint, loaded)
        except CheckpointError as exc:
            raise MatchSetupError(f"--checkpoint: {exc}") from None
    elif policy_url:
        api_key = loaded.config.policy_server.api_key
        try:
            ckpt = from_metadata(fetch_metadata(policy_url, api_key), policy_url)
        except Exception as exc:  # any failure to reach or read the server is the same news to the user
            raise MatchSetupError(f"--policy-url {policy_url}: cannot read the server's metadata ({exc})") from None

    client = loaded.config.client
    deployment = Deployment(task=task, task_source="--task" if task else "", actions_per_chunk=client.actions_per_chunk,
                            threshold=client.chunk_size_threshold, merge=client.merge, control_hz=client.control_hz)
    if arm_id or robot_name:
        from vla.client.controller import RunError
        from vla.client.setup import build_robot, control_settings

        try:
            setup = build_robot(loaded, robot_name, arm_id)
            settings = control_settings(loaded, setup.robot)
        except RunError as exc:
            raise MatchSetupError(str(exc)) from None
        robot = setup.robot
        deployment.robot = setup.robot_name
        deployment.control_hz = settings.control_hz
        deployment.actions_per_chunk = settings.actions_per_chunk
        deployment.threshold = settings.chunk_size_threshold
        deployment.merge = settings.merge
        deployment.cameras = {k: tuple(int(x) for x in v) for k, v in dict(getattr(robot, "cameras", {}) or {}).items()}
        deployment.joint_names = tuple(robot.joint_names)
        deployment.facts = robot_facts(robot, setup.robot_name)
        try:
            deployment.live, observation = read_live(robot, task)
        except Exception as exc:  # the arm did not answer: say so rather than check half a deployment
            raise MatchSetupError(f"cannot read the arm ({setup.robot_name}): {type(exc).__name__}: {exc}") from None
        deployment.task, deployment.task_source = task_text(observation, task)
    if episodes:
        deployment.recording = open_dataset(episodes, "--episodes")
    if deployment.facts is None:
        deployment.facts = robot_facts(None, deployment.robot, ds.names("action"))
    return MatchInputs(ds, deployment, ckpt)
