"""`vla run`: drive an arm with a remote policy (async chunks, safety layer, watchdog, tick log)."""

from __future__ import annotations

import signal
import sys
import time
import uuid
from pathlib import Path

import click

from vla.client.queue import MERGE_MODES


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:4]


@click.command()
@click.option("--robot", "robot_name", default=None, help="Robot plugin (default: the arm file's robot).")
@click.option("--task", required=True, help="The language goal (on the simulator also a task id, e.g. lift).")
@click.option("--policy-url", default=None, help="ws://HOST:PORT of the policy server (default: the lab config).")
@click.option("--arm", "arm_id", default=None, help="Arm id from vla.yaml's arms: robot settings and safety file.")
@click.option("--episodes", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=None, type=int, help="Seed of the first episode (episode i uses seed + i).")
@click.option("--duration", "episode_s", default=None, type=click.FloatRange(min=0, min_open=True),
              help="Seconds per episode (default: the robot's episode limit; a real arm runs until stopped).")
@click.option("--record", "record_dir", default=None, type=click.Path(file_okay=False),
              help="Record each episode into a LeRobot dataset under this folder.")
@click.option("--merge", type=click.Choice(MERGE_MODES), default=None, help="How a new chunk merges into the queue (default: lab config).")
@click.option("--actions-per-chunk", type=click.IntRange(min=1), default=None, help="Actions used from each chunk (default: lab config).")
@click.option("--threshold", type=click.FloatRange(0, 1), default=None, help="Ask for the next chunk when the queue falls to this share of a chunk.")
@click.option("--control-hz", type=click.FloatRange(min=0, min_open=True), default=None, help="Control rate (default: the robot's).")
@click.option("--jpeg-quality", type=click.IntRange(1, 100), default=None,
              help="Send camera frames as JPEG of this quality when the server takes JPEG (default: lab config; raw).")
@click.option("--safety", "safety_path", default=None, type=click.Path(dir_okay=False), help="Safety limits file (default: the arm's).")
@click.option("--log-dir", default=None, type=click.Path(file_okay=False), help="Where the tick log goes (default: lab config log_dir).")
@click.option("--adapter", "adapter_name", default=None,
              help="Policy plugin whose key mapping to apply, for servers that do not speak vla's keys (e.g. pi0-fast for openpi's own server).")
@click.option("--preflight/--no-preflight", default=None,
              help="Check the deployment against the training before the first action (default: on for a real arm).")
@click.option("--dataset", "preflight_dataset", default=None, type=click.Path(file_okay=False),
              help="The training dataset the pre-flight compares with (default: preflight.dataset in vla.yaml).")
@click.option("--checkpoint", "preflight_checkpoint", default=None, type=click.Path(),
              help="The checkpoint the pre-flight reads (default: preflight.checkpoint, else the server's metadata).")
@click.pass_context
def run(ctx, robot_name, task, policy_url, arm_id, episodes, seed, episode_s, record_dir, merge,
        actions_per_chunk, threshold, control_hz, jpeg_quality, safety_path, log_dir, adapter_name,
        preflight, preflight_dataset, preflight_checkpoint):
    """Drive an arm with a remote policy.

    A control loop at the arm's rate pops one action per tick from a queue, asks the policy
    server for the next chunk when the queue falls to the threshold, and merges the reply
    (latest, weighted_average or rtc). Every command passes the safety layer; when the queue
    runs dry or the server is gone the arm holds still, and the client reconnects by itself.
    Ctrl-C or SIGTERM holds the arm and closes the episode. Every tick goes to a JSONL log;
    `vla report LOG` plots it.
    """
    from rich.console import Console

    from vla.cli.common import lab_config
    from vla.client.clock import RealClock
    from vla.client.controller import Controller, RunError
    from vla.client.session import StopFlag, run_episodes, stop_on_signals, wait_connected
    from vla.client.setup import build_adapter, build_robot, control_settings
    from vla.client.ticklog import TickLog
    from vla.client.worker import InferenceWorker

    console = Console(stderr=True)
    loaded = lab_config(ctx)
    cfg = loaded.config
    url = policy_url or cfg.policy_server.resolved_url()
    run_id = new_run_id()
    log_root = Path(log_dir or (loaded.base_dir / cfg.log_dir))
    log_path = log_root / f"run_{run_id}.jsonl"
    stop = StopFlag()
    clock = RealClock()
    try:
        setup = build_robot(loaded, robot_name, arm_id, safety_path)
        robot = setup.robot
        settings = control_settings(loaded, robot, merge, control_hz, actions_per_chunk, threshold, jpeg_quality)
        adapter = build_adapter(loaded, adapter_name)
    except RunError as exc:
        raise click.ClickException(str(exc)) from None

    log = TickLog(log_path, t0=clock.now())
    log.write("run", run_id=run_id, robot=setup.robot_name, arm=arm_id, task=task, policy_url=url,
              joint_names=list(robot.joint_names),
              merge=settings.merge, control_hz=settings.control_hz, actions_per_chunk=settings.actions_per_chunk,
              threshold=settings.chunk_size_threshold, safety=setup.safety_source, episodes=episodes, seed=seed)
    controller = Controller(robot, setup.safety, settings, clock, log, task=task, session=run_id)
    worker = InferenceWorker(url, api_key=cfg.policy_server.api_key, connect_timeout_s=cfg.client.connect_timeout_s,
                             max_backoff_s=cfg.client.reconnect_max_backoff_s, jpeg_quality=settings.jpeg_quality,
                             adapter=adapter)
    from vla.matching.preflight import PreflightFailed as PreflightRefused

    recorder = None
    results = []
    error: str | None = None
    exit_code = 1
    console.print(f"[bold]vla run[/] {setup.robot_name} → {url}  merge={settings.merge} "
                  f"{settings.control_hz:g} Hz  log {log_path}")
    with stop_on_signals(stop):
        robot.connect()
        try:
            worker.start()
            wait_connected(controller, worker, clock, cfg.client.connect_timeout_s + 2.0, stop)
            from vla.matching.preflight import run_preflight

            run_preflight(console, loaded, robot, setup.robot_name, settings, controller, task, seed, preflight,
                          preflight_dataset, preflight_checkpoint)
            if record_dir:
                from vla.recording import EpisodeRecorder

                # lerobot (and torch) load when the first frame is written: load them now, before
                # the control loop starts, so that first tick does not stall for seconds.
                import lerobot.datasets.lerobot_dataset  # noqa: F401

                from vla.client.recording import BackgroundRecorder

                recorder = BackgroundRecorder(
                    EpisodeRecorder(record_dir, robot, task, arm_id or setup.robot_name, fps=settings.control_hz)
                )
                log.write("event", event="recording", dataset=str(recorder.path), t=log.rel(clock.now()))
                console.print(f"recording to {recorder.path}")
            results = _run_with_progress(console, robot, controller, worker, clock, task, episodes, seed,
                                         episode_s, recorder, stop, run_episodes)
        except RunError as exc:
            error = str(exc)
        except PreflightRefused as exc:
            error, exit_code = f"pre-flight check failed: {exc}", 3
        except Exception as exc:  # the robot or the recorder failed: hold, close, and say what happened
            error = f"{type(exc).__name__}: {exc}"
            log.write("event", event="crash", reason=error, t=log.rel(clock.now()))
        finally:
            try:
                controller.hold()
            except Exception:
                pass
            worker.stop()
            if recorder is not None:
                recorder.close()
            robot.disconnect()
            log.close()
    _print_results(results, log_path)
    if error:
        exc = click.ClickException(error)
        exc.exit_code = exit_code
        raise exc
    if stop.is_set():
        console.print(f"stopped by {stop.reason}; the arm holds its last safe position")
        sys.exit(128 + int(getattr(signal, stop.reason, signal.SIGINT)))


def _run_with_progress(console, robot, controller, worker, clock, task, episodes, seed, episode_s, recorder, stop,
                       run_episodes):
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    limit = episode_s or getattr(robot, "max_episode_s", None)
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[status]}"),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        bar = {"id": None}

        def on_start(i, seed_i):
            total = int(limit * controller.settings.control_hz) if limit else None
            bar["id"] = progress.add_task(f"episode {i + 1}/{episodes}", total=total, status="")

        def on_tick(result):
            if result.tick % 10 == 0:
                c = controller.counts
                rtt = f"{controller.last_rtt_ms:.0f} ms" if controller.last_rtt_ms is not None else "-"
                progress.update(bar["id"], completed=result.tick,
                                status=f"queue {controller.queue.length_from(result.tick + 1):2d}  rtt {rtt}  "
                                       f"underflows {c['underflows']}  clamps {c['clamps']}")

        def on_end(res):
            ok = {True: "[green]success[/]", False: "[red]failure[/]", None: "done"}[res.success]
            progress.update(bar["id"], status=ok + (" (stopped)" if res.interrupted else ""))

        return run_episodes(robot, controller, worker, clock, task=task, episodes=episodes, seed=seed,
                            episode_s=episode_s, recorder=recorder, stop=stop, on_tick=on_tick,
                            on_episode_start=on_start, on_episode_end=on_end)


def _print_results(results, log_path) -> None:
    from rich.console import Console
    from rich.table import Table

    if results:
        table = Table(title="episodes")
        for col in ("episode", "seed", "success", "seconds", "underflows", "clamps", "rejected", "disconnects"):
            table.add_column(col, justify="right")
        for r in results:
            c = r.counts
            table.add_row(str(r.index), "-" if r.seed is None else str(r.seed), {True: "yes", False: "no", None: "-"}[r.success]
                          + (" (stopped)" if r.interrupted else ""), f"{r.duration_s:.1f}",
                          str(c.get("underflows", 0)), str(c.get("clamps", 0)), str(c.get("rejected", 0)),
                          str(c.get("disconnects", 0)))
        Console().print(table)
    Console().print(f"tick log: {log_path}   plot it with: vla report {log_path}")
