"""`vla init`: a starter lab folder that loads cleanly and says what each setting is for."""

from __future__ import annotations

from pathlib import Path

import click

from vla.config import ClientConfig

VLA_YAML = """\
# Lab configuration for vla. Every key is optional; `vla config show` prints the
# effective values and where each came from. Environment variables override it:
# POLICY_SERVER_HOST/PORT/URL, REWARDER_HOST/PORT/URL, ACTIONS_PER_CHUNK,
# CHUNK_SIZE_THRESHOLD, LOG_DIR, VLA_API_KEY (also read from .env beside this file).
lab: {lab}
log_dir: logs

policy_server:          # where `vla run` finds the policy (the GPU host)
  host: localhost
  port: 8080

rewarder:               # where rewarders are served (`vla serve-rewarder`, `vla up`)
  host: localhost
  port: 18080

client:                 # how `vla run` consumes action chunks
  actions_per_chunk: {apc}     # 20-60; longer resists jitter, shorter reacts faster
  chunk_size_threshold: {thr}  # ask for the next chunk when the queue falls to this share
  merge: {merge}                # latest | weighted_average | rtc

deploy:                 # what `vla up` starts on the GPU host
  policy: null          # e.g. openvla, pi0-fast, lerobot, scripted
  rewarder: null        # e.g. qwen-vl, heuristic

arms:                   # arm id -> its file (port, cameras, safety limits)
{arms}
plugins: {{}}             # per-plugin settings, by plugin name
"""

ARM_YAML = """\
# Arm {arm}: which robot driver runs it, the driver's settings, and its safety limits.
# `vla doctor` checks this file through the {robot} plugin's own config class.
robot: {robot}
config:
{config}safety: ../safety/{safety}.yaml
"""

ENV_EXAMPLE = """\
# Copy to .env and fill in; never commit the real file.
POLICY_SERVER_HOST=gpu-host.local
POLICY_SERVER_PORT=8080
REWARDER_HOST=gpu-host.local
REWARDER_PORT=18080
ACTIONS_PER_CHUNK=40
CHUNK_SIZE_THRESHOLD=0.6
LOG_DIR=logs
VLA_API_KEY=change-me
"""


# The arm vla is made for (design.md); any robot plugin with a description works with --robot.
DEFAULT_ROBOT = "so101"


def _robot(name: str):
    """(spec, description) of the robot plugin ``name``, or a usage error listing the choices."""
    from vla.description import NoDescription
    from vla.plugins import PluginError, UnknownComponent, get_registry

    registry = get_registry()
    try:
        spec = registry.spec("robots", name)
        return spec, spec.load_description()
    except (UnknownComponent, PluginError, NoDescription) as exc:
        usable = sorted(n for n, r in registry.components["robots"].items() if r.spec.robot_description)
        raise click.UsageError(f"--robot {name}: {exc} (robots with a description: {', '.join(usable) or 'none'})") from None


def _indent(text: str, spaces: int = 2) -> str:
    return "".join(" " * spaces + line if line.strip() else line for line in text.splitlines(keepends=True))


@click.command()
@click.argument("directory", type=click.Path(file_okay=False), default=".")
@click.option("--lab", default=None, help="Lab name written into vla.yaml (default: the folder's name).")
@click.option("--arms", "n_arms", default=1, show_default=True, type=click.IntRange(1, 64), help="How many arm files.")
@click.option("--robot", "robot_name", default=DEFAULT_ROBOT, show_default=True,
              help="Robot plugin that drives the arms; its description gives the safety file.")
@click.option("--force", is_flag=True, help="Overwrite files that exist.")
def init(directory: str, lab: str | None, n_arms: int, robot_name: str, force: bool) -> None:
    """Write a starter lab folder: vla.yaml, .env.example, arms/armNN.yaml, safety/ROBOT.yaml."""
    root = Path(directory)
    lab = lab or root.resolve().name
    spec, description = _robot(robot_name)
    arm_ids = [f"arm{i:02d}" for i in range(1, n_arms + 1)]
    defaults = ClientConfig()
    files = {
        root / "vla.yaml": VLA_YAML.format(
            lab=lab,
            apc=defaults.actions_per_chunk,
            thr=defaults.chunk_size_threshold,
            merge=defaults.merge,
            arms="\n".join(f"  {a}: arms/{a}.yaml" for a in arm_ids),
        ),
        root / ".env.example": ENV_EXAMPLE,
        root / "safety" / f"{description.name}.yaml": description.safety_yaml(),
    }
    for arm in arm_ids:
        files[root / "arms" / f"{arm}.yaml"] = ARM_YAML.format(
            arm=arm, robot=spec.name, config=_indent(spec.starter_arm_config(arm)), safety=description.name
        )
    existing = [p for p in files if p.exists()]
    if existing and not force:
        raise click.ClickException(
            "not overwriting " + ", ".join(str(p) for p in existing) + " (use --force)"
        )
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        click.echo(f"wrote {path}")
    click.echo("next: edit arms/*.yaml (port, cameras), then `vla config show` and `vla doctor`")
