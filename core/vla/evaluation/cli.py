"""`vla eval`: N seeded episodes per task on an episodic robot (the simulator) against a policy server.

Each episode runs through the same control loop as `vla run` (async chunks, safety layer,
watchdog) and ends on the robot's own success check or its time limit. It prints success@K
per task in a table and writes, into the output folder: ``results.json`` (every episode and
the figures), ``success.png`` (a bar plot), the run's tick log, and optionally a video of one
episode's camera.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from vla.client.queue import MERGE_MODES


def _k_values(value: str) -> list[int]:
    try:
        ks = sorted({int(v) for v in value.split(",") if v.strip()})
    except ValueError:
        raise click.BadParameter(f"expected comma-separated whole numbers, got {value!r}") from None
    if not ks or ks[0] < 1:
        raise click.BadParameter("K values must be >= 1")
    return ks


@click.command("eval")
@click.option("--robot", "robot_name", default=None, help="An episodic robot plugin, e.g. sim (default: the arm file's).")
@click.option("--task", "tasks", multiple=True, required=True,
              help="Task to evaluate (id or goal text); repeat for several, or separate with commas.")
@click.option("--policy-url", default=None, help="ws://HOST:PORT of the policy server (default: the lab config).")
@click.option("--arm", "arm_id", default=None, help="Arm id from vla.yaml (robot settings and safety file).")
@click.option("--episodes", default=10, show_default=True, type=click.IntRange(min=1), help="Episodes per task.")
@click.option("--seed", default=0, show_default=True, type=int, help="Episode i of each task uses seed + i.")
@click.option("--k", "k_text", default="1,5", show_default=True, help="K values for success@K, comma-separated.")
@click.option("--merge", type=click.Choice(MERGE_MODES), default=None, help="Chunk merge mode (default: lab config).")
@click.option("--duration", "episode_s", default=None, type=click.FloatRange(min=0, min_open=True),
              help="Episode time limit in seconds (default: the task's own).")
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Folder for results.json, success.png, the tick log and the video (default: LOG_DIR/eval_<id>).")
@click.option("--video", "video_name", default=None, help="Save one episode's camera as this file (.mp4 or .gif) in --out.")
@click.option("--video-camera", default="front", show_default=True)
@click.option("--video-fps", default=10.0, show_default=True, type=click.FloatRange(min=1),
              help="Frames per second of the video (filmed afterwards by replaying the episode's commands).")
@click.option("--video-episode", default=0, show_default=True, type=click.IntRange(min=0),
              help="Which episode of the first task to film.")
@click.option("--safety", "safety_path", default=None, type=click.Path(dir_okay=False), help="Safety limits file.")
@click.pass_context
def eval_cmd(ctx, robot_name, tasks, policy_url, arm_id, episodes, seed, k_text, merge, episode_s, out_dir,
             video_name, video_camera, video_fps, video_episode, safety_path):
    """Run seeded episodes per task against a policy server and report success@K per task.

    success@K is the chance that at least one of K attempts succeeds, estimated without bias
    from the episodes run (success@1 is the success rate, shown with its 95% interval).
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from vla.cli.common import lab_config
    from vla.client.clock import RealClock
    from vla.client.controller import Controller, RunError
    from vla.client.session import StopFlag, run_episodes, stop_on_signals, wait_connected
    from vla.client.setup import build_robot, control_settings
    from vla.client.ticklog import TickLog
    from vla.client.worker import InferenceWorker, policy_ca_file
    from vla.evaluation.media import plot_success, write_video

    ks = _k_values(k_text)
    task_list = [t.strip() for entry in tasks for t in entry.split(",") if t.strip()]
    if video_name and Path(video_name).suffix.lower() not in (".mp4", ".gif"):
        raise click.BadParameter("the video must end in .mp4 or .gif", param_hint="--video")
    # logs and pipes are wider than the 80 columns rich assumes, and a folded table is unreadable
    console = Console() if sys.stdout.isatty() else Console(width=160)
    loaded = lab_config(ctx)
    cfg = loaded.config
    url = policy_url or cfg.policy_server.resolved_url()
    run_id = time.strftime("%Y%m%d-%H%M%S")
    out = Path(out_dir) if out_dir else loaded.base_dir / cfg.log_dir / f"eval_{run_id}"
    out.mkdir(parents=True, exist_ok=True)
    try:
        setup = build_robot(loaded, robot_name, arm_id, safety_path)
        settings = control_settings(loaded, setup.robot, merge)
    except RunError as exc:
        raise click.ClickException(str(exc)) from None
    robot = setup.robot
    if not (callable(getattr(robot, "reset", None)) and callable(getattr(robot, "success", None))):
        raise click.ClickException(
            f"robot {setup.robot_name!r} cannot reset and judge episodes itself; `vla eval` needs an episodic "
            "robot such as the simulator (use `vla run` on a real arm)"
        )
    if video_name and video_camera not in getattr(robot, "cameras", {}):
        raise click.BadParameter(f"robot {setup.robot_name!r} has no camera {video_camera!r}", param_hint="--video-camera")

    film_stride = max(1, int(round(settings.control_hz / video_fps))) if video_name else 0
    clock = RealClock()
    log_path = out / "ticks.jsonl"
    log = TickLog(log_path, t0=clock.now())
    log.write("run", run_id=run_id, kind="eval", robot=setup.robot_name, tasks=task_list, policy_url=url,
              merge=settings.merge, control_hz=settings.control_hz, episodes=episodes, seed=seed,
              joint_names=list(robot.joint_names))
    controller = Controller(robot, setup.safety, settings, clock, log, session=f"eval-{run_id}")
    worker = InferenceWorker(url, api_key=cfg.policy_server.api_key, connect_timeout_s=cfg.client.connect_timeout_s,
                             max_backoff_s=cfg.client.reconnect_max_backoff_s, jpeg_quality=settings.jpeg_quality,
                             ca_file=policy_ca_file(loaded), arm=arm_id)
    stop = StopFlag()
    video_key = "observation.images." + video_camera
    outcomes: dict[str, list] = {}
    filmed: dict = {}  # the filmed episode: task, seed and every command sent, for the replay
    error = None
    with stop_on_signals(stop):
        robot.connect()
        try:
            worker.start()
            wait_connected(controller, worker, clock, cfg.client.connect_timeout_s + 2.0, stop)
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=console) as progress:
                bar = progress.add_task("episodes", total=episodes * len(task_list), status="")
                for ti, task in enumerate(task_list):
                    if stop.is_set():
                        break
                    filming = {"on": False}

                    def on_start(i, seed_i, ti=ti, task=task):
                        filming["on"] = bool(video_name) and ti == 0 and i == video_episode
                        if filming["on"]:
                            filmed.update(task=task, seed=seed_i, commands=[])
                        progress.update(bar, description=f"{task} #{i + 1}")

                    def on_tick(result):
                        if filming["on"]:
                            filmed["commands"].append(result.command.copy())

                    def on_end(res, task=task):
                        done = outcomes.setdefault(task, [])
                        done.append(res)
                        wins = sum(1 for r in done if r.success)
                        progress.update(bar, advance=1, status=f"{task}: {wins}/{len(done)} succeeded")
                        filming["on"] = False

                    run_episodes(robot, controller, worker, clock, task=task, episodes=episodes, seed=seed,
                                 episode_s=episode_s, stop=stop, on_tick=on_tick,
                                 on_episode_start=on_start, on_episode_end=on_end)
        except RunError as exc:
            error = str(exc)
        finally:
            try:
                controller.hold()
            except Exception:
                pass
            worker.stop()
            log.close()
    try:
        video_path = None
        if video_name and filmed.get("commands") and not error:
            with console.status("filming the episode by replaying its commands"):
                frames, replay_success = replay_frames(robot, filmed["task"], filmed["seed"], filmed["commands"],
                                                       video_key, film_stride)
            video_path = write_video(frames, out / video_name, settings.control_hz / film_stride)
            live = outcomes[filmed["task"]][video_episode].success
            if replay_success != live:
                console.print(f"[yellow]warning:[/] the replayed episode ended {'well' if replay_success else 'badly'} "
                              f"but the live one did not; the robot is not deterministic, so the video may differ")
    finally:
        robot.disconnect()
    if error:
        raise click.ClickException(error)

    results = summarize(outcomes, ks, robot=setup.robot_name, url=url, merge=settings.merge, seed=seed,
                        policy=(controller.metadata or {}).get("policy"), interrupted=stop.is_set())
    results["tick_log"] = str(log_path)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    plot_path = plot_success(results, out / "success.png") if results["tasks"] else None
    print_table(console, results)
    console.print(f"results: {out / 'results.json'}" + (f"   plot: {plot_path}" if plot_path else "")
                  + (f"   video: {video_path}" if video_path else ""))
    if stop.is_set():
        raise SystemExit(130)


def replay_frames(robot, task: str, seed, commands, video_key: str, stride: int) -> tuple[list, bool]:
    """Frames of an episode re-simulated from its commands.

    Rendering is the simulator's slowest step and would make the control loop miss ticks if
    it filmed live. An episodic simulator is deterministic: the same reset and the same
    commands, one ``act`` per tick as the loop sent them, give the same episode, so it is
    filmed afterwards.
    """
    robot.reset(task, seed)
    frames = [robot.observe()[video_key]]
    for k, command in enumerate(commands, start=1):
        robot.act(command)
        if k % stride == 0:
            frames.append(robot.observe()[video_key])
    return frames, bool(robot.success())


def summarize(outcomes: dict[str, list], ks: list[int], **header) -> dict:
    from vla.evaluation.metrics import success_at_k, wilson_interval

    tasks = {}
    for task, results in outcomes.items():
        finished = [r for r in results if not r.interrupted]
        n = len(finished)
        c = sum(1 for r in finished if r.success)
        tasks[task] = {
            "episodes": n,
            "successes": c,
            "success_at": {str(k): success_at_k(n, c, k) for k in ks} if n else {str(k): None for k in ks},
            "ci95": list(wilson_interval(n, c)),
            "mean_duration_s": round(sum(r.duration_s for r in finished) / n, 3) if n else None,
            "underflows": sum(r.counts.get("underflows", 0) for r in finished),
            "clamps": sum(r.counts.get("clamps", 0) for r in finished),
            "runs": [
                {"seed": r.seed, "success": r.success, "duration_s": r.duration_s, "interrupted": r.interrupted,
                 "counts": r.counts}
                for r in results
            ],
        }
    return {**header, "k": ks, "tasks": tasks}


def print_table(console, results: dict) -> None:
    from rich.table import Table

    table = Table(title=f"success@K on {results['robot']} ({results['merge']})")
    table.add_column("task", no_wrap=True, min_width=10)
    table.add_column("episodes", justify="right")
    table.add_column("successes", justify="right")
    for k in results["k"]:
        table.add_column(f"success@{k}", justify="right")
    table.add_column("95% CI (@1)", justify="right")
    table.add_column("mean s", justify="right")
    for task, r in results["tasks"].items():
        cells = ["-" if r["success_at"][str(k)] is None else f"{r['success_at'][str(k)]:.0%}" for k in results["k"]]
        lo, hi = r["ci95"]
        table.add_row(task, str(r["episodes"]), str(r["successes"]), *cells, f"{lo:.0%}-{hi:.0%}",
                      "-" if r["mean_duration_s"] is None else f"{r['mean_duration_s']:.1f}")
    console.print(table)
