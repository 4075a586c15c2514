"""`vla eval`: N seeded episodes per task on an episodic robot (the simulator) against a policy server.

Each episode runs through the same control loop as `vla run` (async chunks, safety layer,
watchdog) and ends on the robot's own success check or its time limit. It prints success@K
per task in a table and writes, into the output folder: ``results.json`` (every episode and
the figures), ``success.png`` (a bar plot), the run's tick log, and optionally a video of one
episode's camera.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from vla.client.cli import ProgressHooks, exit_with, options_from, session_options, wide_console
from vla.client.setup import SetupError
from vla.client.runner import SessionHooks


def _k_values(value: str) -> list[int]:
    try:
        ks = sorted({int(v) for v in value.split(",") if v.strip()})
    except ValueError:
        raise click.BadParameter(f"expected comma-separated whole numbers, got {value!r}") from None
    if not ks or ks[0] < 1:
        raise click.BadParameter("K values must be >= 1")
    return ks


@click.command("eval")
@click.option("--task", "tasks", multiple=True, required=True,
              help="Task to evaluate (id or goal text); repeat for several, or separate with commas.")
@click.option("--episodes", default=10, show_default=True, type=click.IntRange(min=1), help="Episodes per task.")
@click.option("--seed", default=0, show_default=True, type=int, help="Episode i of each task uses seed + i.")
@click.option("--k", "k_text", default="1,5", show_default=True, help="K values for success@K, comma-separated.")
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Folder for results.json, success.png, the tick log and the video (default: LOG_DIR/eval_<id>).")
@click.option("--video", "video_name", default=None, help="Save one episode's camera as this file (.mp4 or .gif) in --out.")
@click.option("--video-camera", default="front", show_default=True)
@click.option("--video-fps", default=10.0, show_default=True, type=click.FloatRange(min=1),
              help="Frames per second of the video (filmed afterwards by replaying the episode's commands).")
@click.option("--video-episode", default=0, show_default=True, type=click.IntRange(min=0),
              help="Which episode of the first task to film.")
@session_options
@click.pass_context
def eval_cmd(ctx, tasks, episodes, seed, k_text, out_dir, video_name, video_camera, video_fps, video_episode, **kwargs):
    """Run seeded episodes per task against a policy server and report success@K per task.

    success@K is the chance that at least one of K attempts succeeds, estimated without bias
    from the episodes run (success@1 is the success rate, shown with its 95% interval). The
    episodes run through the same session as `vla run` (same options, errors and summary).
    """
    from vla.cli.common import lab_config
    from vla.client.runner import SessionRunner
    from vla.client.summary import print_summary
    from vla.evaluation.media import plot_success, write_video

    ks = _k_values(k_text)
    task_list = [t.strip() for entry in tasks for t in entry.split(",") if t.strip()]
    if video_name and Path(video_name).suffix.lower() not in (".mp4", ".gif"):
        raise click.BadParameter("the video must end in .mp4 or .gif", param_hint="--video")
    console = wide_console()
    err = wide_console(stderr=True)
    loaded = lab_config(ctx)
    run_id = time.strftime("%Y%m%d-%H%M%S")
    out = Path(out_dir) if out_dir else loaded.base_dir / loaded.config.log_dir / f"eval_{run_id}"
    out.mkdir(parents=True, exist_ok=True)
    options = options_from(kwargs, tasks=tuple(task_list), episodes=episodes, seed=seed, kind="eval",
                           run_id=run_id, log_path=str(out / "ticks.jsonl"))
    film = FilmHooks(video_name, video_camera, video_fps, video_episode)
    runner = SessionRunner(loaded, options, hooks=[EpisodicCheck(), film, IncidentHooks(), ProgressHooks(err)])
    summary = runner.run()
    if summary.error:
        print_summary(console, summary)
        exit_with(err, summary)

    robot, settings = runner.robot, runner.settings
    video_path = None
    if film.commands:
        with console.status("filming the episode by replaying its commands"):
            robot.connect()
            try:
                frames, replay_success = replay_frames(robot, film.task, film.seed, film.commands,
                                                       "observation.images." + video_camera, film.stride)
            finally:
                robot.disconnect()
        video_path = write_video(frames, out / video_name, settings.control_hz / film.stride)
        if replay_success != film.success:
            console.print(f"[yellow]warning:[/] the replayed episode ended {'well' if replay_success else 'badly'} "
                          f"but the live one did not; the robot is not deterministic, so the video may differ")

    outcomes: dict[str, list] = {task: [] for task in task_list}
    for result in summary.episodes:
        outcomes.setdefault(result.task, []).append(result)
    metadata = summary.metadata or {}
    results = summarize({t: r for t, r in outcomes.items() if r}, ks, robot=summary.robot, url=summary.url,
                        merge=settings.merge, seed=seed, policy=metadata.get("policy"),
                        checkpoint=(metadata.get("extra") or {}).get("checkpoint") or metadata.get("checkpoint"),
                        interrupted=summary.stopped_by is not None, finished_at=time.time())
    results["tick_log"] = str(summary.log_path)
    results["requests"] = summary.totals.get("requests", 0)
    results["errors"] = summary.errors_by_code
    results["video"] = video_path.name if video_path else None
    (out / "results.json").write_text(json.dumps(results, indent=2))
    plot_path = plot_success(results, out / "success.png") if results["tasks"] else None
    print_summary(err, summary)
    print_table(console, results)
    console.print(f"results: {out / 'results.json'}" + (f"   plot: {plot_path}" if plot_path else "")
                  + (f"   video: {video_path}" if video_path else ""))
    exit_with(err, summary)


class EpisodicCheck(SessionHooks):
    """`vla eval` needs a robot that resets and judges its episodes (the simulator)."""

    def on_prepared(self, session):
        robot = session.robot
        if not (callable(getattr(robot, "reset", None)) and callable(getattr(robot, "success", None))):
            raise SetupError(
                f"robot {session.setup.robot_name!r} cannot reset and judge episodes itself; `vla eval` needs an "
                "episodic robot such as the simulator (use `vla run` on a real arm)"
            )


class IncidentHooks(SessionHooks):
    """What went wrong gently in an episode, as the robot tells it (``incidents()``: e.g. the
    simulator's objects knocked off the table); kept per run for `vla board`."""

    def on_episode_end(self, session, result):
        incidents = getattr(session.robot, "incidents", None)
        if callable(incidents):
            result.info["incidents"] = list(incidents())


class FilmHooks(SessionHooks):
    """Keeps the commands of the episode to film; it is filmed afterwards (see replay_frames)."""

    def __init__(self, video_name, camera, fps, episode):
        self.video_name, self.camera, self.fps, self.episode = video_name, camera, fps, episode
        self.commands: list = []
        self.task = self.seed = self.success = None
        self.stride = 1
        self._on = False

    def on_prepared(self, session):
        if self.video_name and self.camera not in getattr(session.robot, "cameras", {}):
            raise SetupError(f"--video-camera: robot {session.setup.robot_name!r} has no camera {self.camera!r}")
        self.stride = max(1, int(round(session.settings.control_hz / self.fps)))

    def on_episode_start(self, session, episode):
        self._on = bool(self.video_name) and episode.index == self.episode and episode.task == session.options.tasks[0]
        if self._on:
            self.task, self.seed = episode.task, episode.seed

    def on_tick(self, session, tick):
        if self._on:
            self.commands.append(tick.command.copy())

    def on_episode_end(self, session, result):
        if self._on:
            self.success = result.success
        self._on = False


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
                 "counts": r.counts, "incidents": r.info.get("incidents", [])}
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
