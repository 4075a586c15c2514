"""`vla init`: a starter lab folder that loads cleanly and says what each setting is for."""

from __future__ import annotations

from pathlib import Path

import click
import yaml

from vla.config import SO101_JOINT_LIMITS, ClientConfig, so101_safety, unstructure

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
robot: so101
config:
  port: /dev/ttyACM0     # `vla robot find-port` tells which
  id: {arm}
  cameras:               # names must match what the policy was trained on
    front: {{index_or_path: 0, width: 640, height: 480, fps: 30}}
    wrist: {{index_or_path: 1, width: 640, height: 480, fps: 30}}
safety: ../safety/so101.yaml
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


def safety_yaml() -> str:
    header = (
        "# SO-101 safety limits, checked on every command before it reaches the arm.\n"
        "# Joint limits in radians (zero is mid-range, as in LeRobot's SO-101 calibration);\n"
        "# max_step is the largest change allowed in one control tick. The workspace box bounds\n"
        "# the tool point in metres in the base frame, through forward kinematics.\n"
        "# Tighten these to your bench before the first run.\n"
    )
    data = unstructure(so101_safety())
    assert list(data["joints"]) == list(SO101_JOINT_LIMITS)
    return header + yaml.safe_dump(data, sort_keys=False)


@click.command()
@click.argument("directory", type=click.Path(file_okay=False), default=".")
@click.option("--lab", default="lab", help="Lab name written into vla.yaml.")
@click.option("--arms", "n_arms", default=1, show_default=True, type=click.IntRange(1, 64), help="How many arm files.")
@click.option("--force", is_flag=True, help="Overwrite files that exist.")
def init(directory: str, lab: str, n_arms: int, force: bool) -> None:
    """Write a starter lab folder: vla.yaml, .env.example, arms/armNN.yaml, safety/so101.yaml."""
    root = Path(directory)
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
        root / "safety" / "so101.yaml": safety_yaml(),
    }
    for arm in arm_ids:
        files[root / "arms" / f"{arm}.yaml"] = ARM_YAML.format(arm=arm)
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
