"""`vla learn`: improve a learnable policy on N arms from a rewarder's scores alone.

Simulated arms (``--robot sim --arms N``) get arm files generated under ``OUT/lab`` (front
camera only: it is all the policy and the rewarder look at) and run on a simulated clock as
fast as the CPU allows. Their camera is calibrated once by `vla calibrate camera` (the same
procedure as on a real arm: the marker, the kinematics, solvePnP), and all of them share it,
since every simulated arm has the same camera; the learner and the policy never see the
simulator's object positions or its true camera pose. Real arms (``--arm arm01 --arm arm02``)
run in real time with their own calibrations (`vla calibrate camera --arm ARM` first); an
operator resets the scene before each episode and can pause (the arms hold) and resume.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from vla.cli.common import lab_config


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the run is, so that it ends as Ctrl-C ends it: arms stopped, services closed."""


def _terminated(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the clean-up short
    raise _Terminated()


def _pairs(values, option: str) -> dict:
    import yaml

    out = {}
    for text in values:
        key, sep, raw = text.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {text!r}", param_hint=option)
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            out[key.strip()] = raw
    return out


@click.command("learn")
@click.option("--task", required=True, help="The goal: text, or on the simulator a task id (lift, push_left, pick_place).")
@click.option("--robot", "robot_name", default=None, help="Robot plugin (sim, or a real arm's robot with --arm).")
@click.option("--arms", "n_arms", type=click.IntRange(1, 64), default=None,
              help="Number of simulated arms (one process each).")
@click.option("--arm", "arm_ids", multiple=True, help="A real arm from vla.yaml's arms (repeatable); runs in real time.")
@click.option("--rewarder", default=None, help="Rewarder plugin to serve for this run (default: heuristic).")
@click.option("--rewarder-url", default=None, help="Use this running rewarder service instead (http://HOST:PORT).")
@click.option("--budget", type=click.IntRange(min=1), required=True, help="Episodes the learner may use in all.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder for the run.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--record", "record_dir", default=None, type=click.Path(file_okay=False),
              help="Keep the rewarder-approved episodes as LeRobot datasets under this folder (one per task and arm).")
@click.option("--trainer", default="cmaes", show_default=True, help="Online trainer plugin.")
@click.option("--policy", default="primitives", show_default=True, help="Learnable policy plugin.")
@click.option("--set-policy", "policy_pairs", multiple=True, metavar="KEY=VALUE", help="A policy setting (repeatable).")
@click.option("--set-trainer", "trainer_pairs", multiple=True, metavar="KEY=VALUE",
              help="A trainer setting (repeatable), e.g. --set-trainer popsize=8.")
@click.option("--set-robot", "robot_pairs", multiple=True, metavar="KEY=VALUE",
              help="A simulated arm's setting (repeatable), e.g. --set-robot distractor=true.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--heldout", default=100, show_default=True, type=click.IntRange(min=1),
              help="Held-out test layouts the final policy runs on.")
@click.option("--selection-layouts", default=10, show_default=True, type=click.IntRange(min=1),
              help="Held-out layouts, scored by the rewarder, on which the final parameters are chosen.")
@click.option("--select-every", default=3, show_default=True, type=click.IntRange(min=1),
              help="Rounds between two checks of the trainer's best guess on the selection layouts.")
@click.option("--stop-at", type=click.FloatRange(0, 1), default=None,
              help="Stop learning when a selection check reaches this rewarder success rate.")
@click.option("--rewarder-noise", default="none", show_default=True,
              help="Control experiments: flip:P flips each answer with probability P, invert flips all, zero scores 0.")
@click.option("--duration", "episode_s", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Seconds per episode (default: the simulator's task limit; a real arm needs it).")
@click.option("--tick-logs", is_flag=True, help="Write every arm's tick log under OUT/logs (large).")
@click.option("--actions-per-chunk", type=click.IntRange(min=1), default=None,
              help="Actions used from each chunk (default: the policy's whole chunk).")
@click.pass_context
def learn(ctx, task, robot_name, n_arms, arm_ids, rewarder, rewarder_url, budget, out_dir, resume, record_dir, trainer,
          policy, policy_pairs, trainer_pairs, robot_pairs, seed, heldout, selection_layouts, select_every, stop_at,
          rewarder_noise, episode_s, tick_logs, actions_per_chunk):
    """Improve a policy from a rewarder's scores alone: no demonstrations.

    Starts a policy server (the learnable policy, its parameters set per episode by the
    learner), a rewarder service (unless --rewarder-url) and one process per arm, each on the
    same control path as `vla run` (controller, safety layer, watchdog). Each episode's first
    and last front frames go to the rewarder's /score; the learner sees only its replies. The
    simulator's own success check goes to OUT/audit.jsonl, for evaluation. After every round
    the learner's state is saved to OUT/checkpoint.json (atomically); --resume continues.
    At the end the chosen parameters run on --heldout test layouts, and OUT/result.json and
    OUT/learning_curve.png are written.
    """
    from vla.learning.contract import LearningError
    from vla.learning.loop import LearnRun, LearnSettings
    from vla.learning.operator import OperatorQuit
    from vla.learning.progress import LearnProgress
    from vla.learning.rewarders import parse_noise

    t0 = time.monotonic()
    if rewarder and rewarder_url:
        raise click.UsageError("give --rewarder NAME or --rewarder-url URL, not both")
    if bool(n_arms) == bool(arm_ids):
        raise click.UsageError("give --arms N (simulated arms) or --arm ID for each real arm")
    try:
        noise = parse_noise(rewarder_noise)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--rewarder-noise") from None
    if noise and rewarder_url:
        raise click.UsageError("--rewarder-noise wraps the rewarder this run serves; it cannot change one at --rewarder-url")
    loaded = lab_config(ctx)
    config_path = str(loaded.path) if loaded.path else None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    err = _console()
    policy_overrides = _pairs(policy_pairs, "--set-policy")
    if n_arms:
        if not robot_name:
            raise click.UsageError("--arms N needs --robot (e.g. --robot sim)")
        arms = [f"sim{i + 1:02d}" for i in range(n_arms)]
        config_path, clock = _sim_lab(loaded, out, robot_name, arms, _pairs(robot_pairs, "--set-robot")), "simulated"
        if "calibration" not in policy_overrides and "calibrations" not in policy_overrides:
            policy_overrides["calibration"] = str(_calibrate_sim(config_path, out, arms[0], err))
    else:
        arms, clock = list(arm_ids), "real"
        if robot_pairs:
            raise click.UsageError("--set-robot is for simulated arms; a real arm's settings are in its arm file")
        if episode_s is None:
            raise click.UsageError("real arms need --duration SECONDS per episode")
        if "calibration" not in policy_overrides and "calibrations" not in policy_overrides:
            policy_overrides["calibrations"] = _real_calibrations(loaded, arms)
    settings = LearnSettings(
        task=task, robot=robot_name, arms=arms, out=out, budget=budget, clock=clock, config_path=config_path,
        seed=seed, trainer=trainer, trainer_overrides=_pairs(trainer_pairs, "--set-trainer"), policy=policy,
        policy_overrides=policy_overrides, rewarder=None if rewarder_url else (rewarder or "heuristic"),
        rewarder_url=rewarder_url, rewarder_noise=noise, selection_layouts=selection_layouts,
        select_every=select_every, stop_at=stop_at, heldout=heldout, record_dir=record_dir, episode_s=episode_s,
        resume=resume, tick_logs=tick_logs, actions_per_chunk=actions_per_chunk,
    )
    operator = None
    if clock == "real":
        from vla.learning.operator import Operator

        operator = Operator(err)
    progress = LearnProgress(err)
    previous = signal.signal(signal.SIGTERM, _terminated)  # kill, systemd, docker stop: as Ctrl-C
    try:
        with progress:
            result = LearnRun(settings, progress=progress, operator=operator, t0=t0).run()
    except _Terminated:
        err.print(f"terminated (SIGTERM); the last checkpoint is {out / 'checkpoint.json'} (continue with --resume)")
        sys.exit(143)
    except LearningError as exc:
        err.print(f"[red]Error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except OperatorQuit:
        err.print(f"stopped by the operator; the last checkpoint is {out / 'checkpoint.json'} (continue with --resume)")
        sys.exit(130)
    except KeyboardInterrupt:
        err.print(f"interrupted; the last checkpoint is {out / 'checkpoint.json'} (continue with --resume)")
        sys.exit(130)
    finally:
        signal.signal(signal.SIGTERM, previous)
    h = result["heldout"]
    audited = "-" if h["audited_successes"] is None else f"{h['audited_successes']}/{h['episodes']}"
    reached = result["reached_80"]
    click.echo(
        f"vla learn {task}: {result['episodes']} episodes, {result['cpu_s'] / 60:.1f} CPU-min, {result['wall_s']:.0f} s; "
        f"held-out: rewarder {h['rewarder_successes']}/{h['episodes']}, physics (audit) {audited}; "
        f"80% on selection layouts: " + (f"after {reached['episodes']} episodes" if reached else "not reached")
    )
    click.echo(f"result: {out / 'result.json'}   curve: {result['curve_png']}   params: {result['params']}")


def _console():
    from vla.client.cli import wide_console

    return wide_console(stderr=True)


def _sim_lab(loaded, out: Path, robot: str, arms: list[str], overrides: dict) -> str:
    """A lab folder under OUT/lab for the simulated arms: the lab's own settings plus one arm file
    per arm. Returns the path of its vla.yaml."""
    import yaml

    from vla.config import unstructure
    from vla.plugins import PluginError, UnknownComponent, get_spec

    try:
        spec = get_spec("robots", robot)
    except (UnknownComponent, PluginError) as exc:
        raise click.BadParameter(str(exc), param_hint="--robot") from None
    lab = out / "lab"
    (lab / "arms").mkdir(parents=True, exist_ok=True)
    robot_config = dict(loaded.config.plugins.get(robot, {}) or {})
    if spec.config is not None and "cameras" in {a.name for a in __import__("attrs").fields(spec.config)}:
        robot_config["cameras"] = ["front"]  # the policy and the rewarder use the front camera only
    robot_config.update(overrides)
    data = unstructure(loaded.config)
    # no secrets on disk: the arms talk to this run's own loopback services, and a remote
    # rewarder's key reaches them through the environment
    for section in ("policy_server", "rewarder"):
        if isinstance(data.get(section), dict):
            data[section]["api_key"] = None
    data["arms"] = {}
    data["log_dir"] = str((out / "logs").resolve())
    for arm in arms:
        path = lab / "arms" / f"{arm}.yaml"
        path.write_text(yaml.safe_dump({"robot": robot, "config": robot_config}, sort_keys=False))
        data["arms"][arm] = f"arms/{arm}.yaml"
    target = lab / "vla.yaml"
    target.write_text(yaml.safe_dump(data, sort_keys=False))
    # the generated lab must load: a wrong --set-robot fails here, naming the key
    from vla.config import ConfigError, load_config

    try:
        generated = load_config(target)
        from vla.client.setup import SetupError, build_robot

        build_robot(generated, robot, arms[0])
    except (ConfigError, SetupError) as exc:
        raise click.BadParameter(str(exc), param_hint="--set-robot") from None
    return str(target)


def _calibrate_sim(config_path: str, out: Path, arm: str, err) -> Path:
    """The simulated arms' camera calibration, made once by `vla calibrate camera` on one of them."""
    from vla.calibration.camera import calibration_path
    from vla.config import load_config

    loaded = load_config(config_path)
    target = calibration_path(loaded, arm)
    if not target.exists():
        err.print(f"calibrating the simulated camera with `vla calibrate camera --arm {arm}` ...", highlight=False)
        vla = Path(sys.executable).parent / "vla"
        command = [str(vla) if vla.exists() else sys.executable, *([] if vla.exists() else ["-m", "vla"]),
                   "--config", config_path, "calibrate", "camera", "--arm", arm, "--yes", "--out", str(target)]
        t0 = time.monotonic()
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise click.ClickException(f"the camera calibration failed (exit {done.returncode}):\n"
                                       f"{(done.stderr or done.stdout).strip()[-1500:]}")
        err.print(f"calibrated in {time.monotonic() - t0:.0f} s: {target}", highlight=False)
    for other in (loaded.config.arms or {}):
        path = calibration_path(loaded, other)
        if path != target and not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(target, path)  # every simulated arm has the same camera
    return target


def _real_calibrations(loaded, arms: list[str]) -> dict[str, str]:
    from vla.calibration.camera import calibration_path

    found = {}
    for arm in arms:
        path = calibration_path(loaded, arm)
        if not path.exists():
            raise click.ClickException(f"arm {arm} has no camera calibration at {path}: run "
                                       f"`vla calibrate camera --arm {arm}` first")
        found[arm] = str(path)
    return found
