"""One arm of a fleet, in its own process: ``python -m vla.fleet.arm SPEC.json``.

The supervisor (``vla.fleet.supervisor``) writes the spec (an ``ArmSpec`` as JSON) into the
arm's folder and starts this module with the arm's log as its stdout and stderr. The session
is the same ``SessionRunner`` as `vla run`'s, so the arm holds and closes its episode on
SIGTERM or SIGINT and exits with the runner's code (0 ok, 1 failed, 2 bad configuration,
128+signal when stopped). ``StatusHooks`` publishes its state for the supervisor and the
dashboard.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import attrs


@attrs.define
class ArmSpec:
    label: str
    folder: str
    tasks: list[str]
    robot: str | None = None
    arm: str | None = None
    config_path: str | None = None
    episodes: int | None = None  # per task; None: until stopped
    seed: int | None = None
    episode_s: float | None = None
    policy_url: str | None = None
    safety: str | None = None
    record_dir: str | None = None
    merge: str | None = None
    actions_per_chunk: int | None = None
    threshold: float | None = None
    control_hz: float | None = None
    jpeg_quality: int | None = None
    camera_hz: float = 2.0
    camera: str | None = None
    parent_pid: int | None = None
    restarts: int = 0

    def dump(self, path: Path) -> None:
        path.write_text(json.dumps(attrs.asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> ArmSpec:
        from vla.config import structure

        return structure(cls, json.loads(Path(path).read_text()), str(path))


def run_arm(spec: ArmSpec) -> int:
    from vla.client.runner import SessionOptions, SessionRunner
    from vla.client.summary import print_summary
    from vla.config import ConfigError, load_config
    from vla.client.cli import wide_console
    from vla.fleet.status import StatusHooks

    folder = Path(spec.folder)
    hooks = StatusHooks(folder, camera_hz=spec.camera_hz, camera=spec.camera, parent_pid=spec.parent_pid,
                        restarts=spec.restarts)
    console = wide_console()
    try:
        loaded = load_config(spec.config_path)
    except ConfigError as exc:
        hooks.state, hooks.error = "failed", f"bad configuration: {exc}"
        hooks.write(force=True)
        console.print(f"Error: {hooks.error}", highlight=False)
        return 2
    options = SessionOptions(
        tasks=tuple(spec.tasks), episodes=spec.episodes, seed=spec.seed, episode_s=spec.episode_s,
        robot=spec.robot, arm=spec.arm, safety=spec.safety, policy_url=spec.policy_url, merge=spec.merge,
        actions_per_chunk=spec.actions_per_chunk, threshold=spec.threshold, control_hz=spec.control_hz,
        jpeg_quality=spec.jpeg_quality, record_dir=spec.record_dir, log_path=str(folder / "ticks.jsonl"),
        kind="fleet", label=spec.label,
    )
    summary = SessionRunner(loaded, options, hooks=[hooks]).run()
    print_summary(console, summary)
    if summary.error:
        console.print(f"Error: {summary.error}", highlight=False, soft_wrap=True)
    sys.stdout.flush()
    return summary.exit_code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m vla.fleet.arm SPEC.json", file=sys.stderr)
        return 2
    return run_arm(ArmSpec.load(Path(argv[0])))


if __name__ == "__main__":
    sys.exit(main())
