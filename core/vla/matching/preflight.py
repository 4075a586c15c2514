"""`vla run --preflight`: before the first action, the checks that need no eval recording.

It runs once the arm is connected and the policy server's metadata is known (the session
runner's ``on_ready``), against the training dataset (``--dataset`` or ``preflight.dataset`` in
vla.yaml) and the checkpoint (``--checkpoint``/``preflight.checkpoint``; without one, what the
server's metadata says about its policy). A failed check refuses to start, naming the check
and its numbers; nothing has moved. Warnings are printed and the run goes on. The result goes
into the tick log as a ``preflight`` event.

On by default for a real arm (a robot that cannot reset itself), off for the simulator;
``--no-preflight`` skips it. A real arm with no training dataset configured runs with a
printed warning that nothing was checked. `vla run` passes ``PreflightHooks`` to the session
runner, ahead of its progress bar.
"""

from __future__ import annotations

from pathlib import Path

from vla.matching.checks import PREFLIGHT_CHECKS
from vla.matching.checkpoint import CheckpointError, from_metadata, read_checkpoint
from vla.matching.deployment import Deployment, from_observation, task_text
from vla.matching.inputs import MatchInputs
from vla.matching.results import FAIL, MatchReport
from vla.matching.robot_facts import robot_facts
from vla.matching.run import MatchSetupError, open_dataset, run_checks

from vla.client.runner import PreflightFailed, SessionHooks


def is_real_arm(robot) -> bool:
    """A robot that cannot reset and judge episodes itself is hardware (the simulator can)."""
    return not (callable(getattr(robot, "reset", None)) and callable(getattr(robot, "success", None)))


def resolve_paths(loaded, dataset: str | None, checkpoint: str | None) -> tuple[Path | None, Path | None]:
    """Flags win; otherwise vla.yaml's ``preflight`` section, relative to vla.yaml's folder."""
    section = getattr(loaded.config, "preflight", None)
    base = loaded.base_dir

    def pick(flag, configured):
        if flag:
            return Path(flag)
        if configured:
            path = Path(configured).expanduser()
            return path if path.is_absolute() else base / path
        return None

    return (pick(dataset, getattr(section, "dataset", None)), pick(checkpoint, getattr(section, "checkpoint", None)))


def preflight_report(loaded, robot, robot_name: str | None, settings, metadata: dict | None, task: str,
                     dataset: Path, checkpoint: Path | None, seed: int | None = None) -> MatchReport:
    """The pre-flight checks for a connected robot, before anything moves."""
    ds = open_dataset(dataset, "pre-flight dataset")
    if checkpoint is not None:
        try:
            ckpt = read_checkpoint(checkpoint, loaded)
        except CheckpointError as exc:
            raise MatchSetupError(f"pre-flight checkpoint: {exc}") from None
    else:
        ckpt = from_metadata(metadata, "policy server") if metadata else None
    if not is_real_arm(robot):
        robot.reset(task, seed)  # the scene an episode of this task starts from (the session resets again)
    observation = robot.observe()
    text, source = task_text(observation, task)
    deployment = Deployment(task=text, task_source=source, robot=robot_name, facts=robot_facts(robot, robot_name),
                            joint_names=tuple(robot.joint_names),
                            cameras={k: tuple(int(x) for x in v) for k, v in dict(getattr(robot, "cameras", {}) or {}).items()},
                            control_hz=settings.control_hz, actions_per_chunk=settings.actions_per_chunk,
                            threshold=settings.chunk_size_threshold, merge=settings.merge,
                            live=from_observation(observation))
    return run_checks(MatchInputs(ds, deployment, ckpt), only=PREFLIGHT_CHECKS)


def refuse_on_failure(report: MatchReport) -> None:
    failed = report.failed()
    if failed:
        raise PreflightFailed("; ".join(f"{c.name}: {c.summary}" for c in failed))


class PreflightHooks(SessionHooks):
    """The session runner's hook: check in ``on_ready``; a failed check raises PreflightFailed (exit 3).

    ``enabled``: True (``--preflight``), False (``--no-preflight``) or None (on for a real arm)."""

    def __init__(self, console, enabled: bool | None = None, dataset: str | None = None, checkpoint: str | None = None):
        self.console = console
        self.enabled, self.dataset, self.checkpoint = enabled, dataset, checkpoint
        self.report: MatchReport | None = None

    def on_ready(self, session) -> None:
        self.report = run_preflight(self.console, session.loaded, session.robot, session.setup.robot_name,
                                    session.settings, session.controller, session.options.tasks[0],
                                    session.options.seed, self.enabled, self.dataset, self.checkpoint)


def log_event(log, report: MatchReport, clock) -> None:
    log.write("event", event="preflight", status=report.status,
              checks={c.name: c.status for c in report.checks},
              failed={c.name: c.summary for c in report.checks if c.status == FAIL}, t=log.rel(clock.now()))


def run_preflight(console, loaded, robot, robot_name, settings, controller, task, seed, enabled, dataset, checkpoint):
    """`vla run`'s pre-flight between connecting and the first action (``enabled`` None: on for a real arm)."""
    if enabled is False or (enabled is None and not is_real_arm(robot)):
        return None
    dataset_path, checkpoint_path = resolve_paths(loaded, dataset, checkpoint)
    if dataset_path is None:
        if enabled:
            raise PreflightFailed("--preflight needs the training dataset: pass --dataset DIR or set preflight.dataset "
                                  "in vla.yaml")
        console.print("[yellow]pre-flight skipped[/]: no training dataset to compare with (set preflight.dataset in "
                      "vla.yaml or pass --dataset; --no-preflight silences this)")
        return None
    from vla.matching.console import print_report

    try:
        report = preflight_report(loaded, robot, robot_name, settings, controller.metadata, task, dataset_path,
                                  checkpoint_path, seed)
    except MatchSetupError as exc:
        raise PreflightFailed(str(exc)) from None
    log_event(controller.log, report, controller.clock)
    print_report(console, report)
    refuse_on_failure(report)
    return report
