"""`vla robot find-port | setup-motors | calibrate`: LeRobot's bring-up tools for an SO-101.

Each command runs LeRobot's own function (the one behind lerobot-find-port,
lerobot-setup-motors, lerobot-calibrate) on the arm described by a vla arm file, so a lab
fills in port and id once, in YAML, instead of on every command line.
"""

from __future__ import annotations

from pathlib import Path

import click


def _arm_config(ctx: click.Context, arm: str | None, port: str | None, arm_id: str | None, calibration_dir: str | None):
    """The SO101Config from ``--arm`` (an arm id of vla.yaml or a per-arm YAML file) and overrides.

    The bring-up tools talk to the motors only, so cameras are left out.
    """
    import attrs

    from vla.config import ArmConfig, ConfigError, load_config, load_arm, read_yaml, structure
    from vla_so101.config import SO101Config

    data: dict = {}
    source = "command line"
    if arm is not None:
        try:
            if Path(arm).suffix in (".yaml", ".yml") or Path(arm).is_file():
                path = Path(arm)
                if not path.is_file():
                    raise ConfigError(str(path), "(file)", "no such arm file")
                arm_cfg = structure(ArmConfig, read_yaml(path), str(path))
            else:
                loaded = load_config((ctx.find_root().obj or {}).get("config_path"))
                arm_cfg, path = load_arm(loaded, arm)
        except ConfigError as exc:
            raise click.UsageError(str(exc)) from None
        if not _feetech_arm(arm_cfg.robot):
            raise click.UsageError(f"{path}: robot is {arm_cfg.robot!r}; these commands are for SO-follower arms (so101, so100)")
        data, source = dict(arm_cfg.config), str(path)
    try:
        config = structure(SO101Config, data, source, "config")
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    overrides = {k: v for k, v in (("port", port), ("id", arm_id), ("calibration_dir", calibration_dir)) if v is not None}
    return attrs.evolve(config, cameras={}, **overrides)


def _feetech_arm(robot: str) -> bool:
    """Whether robot plugin ``robot`` drives an SO-follower arm (its config is an SO101Config)."""
    from vla.plugins import get_registry
    from vla_so101.config import SO101Config

    try:
        config = get_registry().spec("robots", robot).config
    except Exception:
        return False
    return isinstance(config, type) and issubclass(config, SO101Config)


_arm_options = [
    click.option("--arm", help="Arm id from vla.yaml's `arms:`, or a per-arm YAML file."),
    click.option("--port", help="Serial port of the arm's motor bus, e.g. /dev/ttyACM0 (overrides the arm file)."),
    click.option("--id", "arm_id", help="Calibration id of the arm, e.g. arm01 (overrides the arm file)."),
    click.option("--calibration-dir", type=click.Path(file_okay=False), help="Folder of calibration files."),
]


def arm_options(fn):
    for option in reversed(_arm_options):
        fn = option(fn)
    return fn


@click.group()
def robot() -> None:
    """Bring up an SO-101 arm: find its port, set motor ids, calibrate (LeRobot's tools)."""


@robot.command("find-port")
def find_port() -> None:
    """Find the arm's serial port: lists ports, asks you to unplug the arm, shows which one went."""
    from lerobot.scripts.lerobot_find_port import find_port as lerobot_find_port

    try:
        lerobot_find_port()
    except OSError as exc:
        raise click.ClickException(str(exc)) from None


@robot.command("setup-motors")
@arm_options
@click.pass_context
def setup_motors(ctx, arm, port, arm_id, calibration_dir) -> None:
    """Give each motor its id and baud rate, one motor connected at a time (lerobot-setup-motors)."""
    from lerobot.scripts.lerobot_setup_motors import SetupConfig
    from lerobot.scripts.lerobot_setup_motors import setup_motors as lerobot_setup_motors

    from vla_so101.robot import lerobot_config, reply_timeout_for_new_buses

    config = _arm_config(ctx, arm, port, arm_id, calibration_dir)
    try:
        with reply_timeout_for_new_buses(config.reply_timeout_ms):
            lerobot_setup_motors(SetupConfig(robot=lerobot_config(config)))
    except (ConnectionError, RuntimeError) as exc:
        raise click.ClickException(f"{config.port}: {exc}") from None


@robot.command("calibrate")
@arm_options
@click.pass_context
def calibrate(ctx, arm, port, arm_id, calibration_dir) -> None:
    """Record the arm's mid-range pose and joint ranges into <calibration-dir>/<id>.json (lerobot-calibrate)."""
    from lerobot.scripts.lerobot_calibrate import CalibrateConfig
    from lerobot.scripts.lerobot_calibrate import calibrate as lerobot_calibrate

    from vla_so101.robot import lerobot_config, reply_timeout_for_new_buses

    config = _arm_config(ctx, arm, port, arm_id, calibration_dir)
    try:
        with reply_timeout_for_new_buses(config.reply_timeout_ms):
            lerobot_calibrate(CalibrateConfig(robot=lerobot_config(config)))
    except (ConnectionError, RuntimeError) as exc:
        raise click.ClickException(f"{config.port}: {exc}") from None
