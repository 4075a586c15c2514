"""`vla run`: drive an arm with a remote policy (async chunks, safety layer, watchdog, tick log).

The options shared with `vla eval` are defined once here (``session_options``), and both
commands run through ``vla.client.runner.SessionRunner``, so they cannot drift apart.
"""

from __future__ import annotations

import sys

import click

from vla.client.queue import MERGE_MODES
from vla.client.runner import SessionHooks


def session_options(fn):
    """The options every session command takes (robot, arm, server, chunking, frames, safety)."""
    options = [
        click.option("--robot", "robot_name", default=None, help="Robot plugin (default: the arm file's robot)."),
        click.option("--arm", "arm_id", default=None, envvar="ARM_ID", show_envvar=True,
                     help="Arm id from vla.yaml's arms: its robot, settings and safety file (an unknown arm is an error)."),
        click.option("--policy-url", default=None, help="ws://HOST:PORT of the policy server (default: the lab config)."),
        click.option("--merge", type=click.Choice(MERGE_MODES), default=None,
                     help="How a new chunk merges into the queue (default: lab config)."),
        click.option("--actions-per-chunk", type=click.IntRange(min=1), default=None,
                     help="Actions used from each chunk (default: lab config)."),
        click.option("--threshold", type=click.FloatRange(0, 1, min_open=True), default=None,
                     help="Ask for the next chunk when the queue falls to this share of a chunk (0-1]."),
        click.option("--control-hz", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Control rate (default: the robot's)."),
        click.option("--jpeg-quality", type=click.IntRange(1, 100), default=None,
                     help="Send camera frames as JPEG of this quality when the server takes JPEG (default: lab config; raw)."),
        click.option("--adapter", "adapter_name", default=None,
                     help="Policy plugin whose key mapping to apply, for servers that do not speak vla's keys "
                          "(e.g. pi0-fast for openpi's own server)."),
        click.option("--safety", "safety_path", default=None, type=click.Path(dir_okay=False),
                     help="Safety limits file (default: the arm's, else the robot description's)."),
        click.option("--duration", "episode_s", default=None, type=click.FloatRange(min=0, min_open=True),
                     help="Seconds per episode (default: the robot's episode limit; a real arm runs until stopped)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def options_from(kwargs: dict, **extra):
    """SessionOptions from the shared click options (plus the command's own)."""
    from vla.client.runner import SessionOptions

    return SessionOptions(
        robot=kwargs["robot_name"], arm=kwargs["arm_id"], policy_url=kwargs["policy_url"], merge=kwargs["merge"],
        actions_per_chunk=kwargs["actions_per_chunk"], threshold=kwargs["threshold"],
        control_hz=kwargs["control_hz"], jpeg_quality=kwargs["jpeg_quality"], adapter=kwargs["adapter_name"],
        safety=kwargs["safety_path"], episode_s=kwargs["episode_s"], **extra,
    )


def wide_console(stderr: bool = False):
    """A rich console; logs and pipes are wider than the 80 columns rich assumes, and a folded
    table is unreadable."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr) if stream.isatty() else Console(stderr=stderr, width=160)


def exit_with(console, summary) -> None:
    """One line naming the cause (on stderr), then the session's exit code."""
    if summary.stopped_by and not summary.error:
        console.print(f"stopped by {summary.stopped_by}; the arm holds its last safe position", highlight=False)
    if summary.error:
        console.print(f"[red]Error:[/] {summary.error}", highlight=False, soft_wrap=True)
    if summary.exit_code:
        sys.exit(summary.exit_code)


@click.command()
@click.option("--task", required=True, help="The language goal (on the simulator also a task id, e.g. lift).")
@click.option("--episodes", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=None, type=int, help="Seed of the first episode (episode i uses seed + i).")
@click.option("--record", "record_dir", default=None, type=click.Path(file_okay=False),
              help="Record each episode into a LeRobot dataset under this folder.")
@click.option("--log-dir", default=None, type=click.Path(file_okay=False), help="Where the tick log goes (default: lab config log_dir).")
@click.option("--preflight/--no-preflight", default=None,
              help="Check the deployment against the training before the first action (default: on for a real arm).")
@click.option("--dataset", "preflight_dataset", default=None, type=click.Path(file_okay=False),
              help="The training dataset the pre-flight compares with (default: preflight.dataset in vla.yaml).")
@click.option("--checkpoint", "preflight_checkpoint", default=None, type=click.Path(),
              help="The checkpoint the pre-flight reads (default: preflight.checkpoint, else the server's metadata).")
@session_options
@click.pass_context
def run(ctx, task, episodes, seed, record_dir, log_dir, preflight, preflight_dataset, preflight_checkpoint, **kwargs):
    """Drive an arm with a remote policy.

    A control loop at the arm's rate pops one action per tick from a queue, asks the policy
    server for the next chunk when the queue falls to the threshold, and merges the reply
    (latest, weighted_average or rtc). Every command passes the safety layer; when the queue
    runs dry or the server is gone the arm holds still, and the client reconnects by itself.
    Ctrl-C or SIGTERM holds the arm and closes the episode. Every tick goes to a JSONL log;
    `vla report LOG` plots it. Requests the server refused are counted in the summary; a run
    whose requests all fail exits 1 with the server's message.
    """
    from vla.cli.common import lab_config
    from vla.client.runner import SessionRunner
    from vla.client.summary import print_summary

    console = wide_console(stderr=True)
    loaded = lab_config(ctx)
    options = options_from(kwargs, tasks=(task,), episodes=episodes, seed=seed, record_dir=record_dir,
                           log_dir=log_dir, kind="run")
    from vla.matching.preflight import PreflightHooks

    hooks = [PreflightHooks(console, preflight, preflight_dataset, preflight_checkpoint), ProgressHooks(console)]
    runner = SessionRunner(loaded, options, hooks=hooks)
    summary = runner.run()
    print_summary(wide_console(), summary)
    exit_with(console, summary)


class ProgressHooks(SessionHooks):
    """A rich progress bar per episode: queue, round trip, underflows and clamps as they happen."""

    def __init__(self, console):
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = console
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[status]}"),
                                 TimeElapsedColumn(), console=console, transient=False)
        self.bar = None

    def on_ready(self, session):
        s = session.settings
        self.console.print(f"[bold]vla {session.options.kind}[/] {session.label} → {session.url}  merge={s.merge} "
                           f"{s.control_hz:g} Hz  log {session.log_path}", highlight=False)
        self.progress.start()

    def on_episode_start(self, session, episode):
        limit = session.options.episode_s or getattr(session.robot, "max_episode_s", None)
        total = int(limit * session.settings.control_hz) if limit else None
        of = f"/{len(session.options.tasks) * session.options.episodes}" if session.options.episodes else ""
        self.bar = self.progress.add_task(f"{episode.task} #{episode.index + 1}{of}", total=total, status="")

    def on_tick(self, session, tick):
        if tick.tick % 10 == 0 and self.bar is not None:
            c = session.controller
            rtt = f"{c.last_rtt_ms:.0f} ms" if c.last_rtt_ms is not None else "-"
            self.progress.update(self.bar, completed=tick.tick,
                                 status=f"queue {c.queue.length_from(tick.tick + 1):2d}  rtt {rtt}  "
                                        f"underflows {c.counts['underflows']}  clamps {c.counts['clamps']}  "
                                        f"errors {c.counts['errors']}")

    def on_episode_end(self, session, result):
        ok = {True: "[green]success[/]", False: "[red]failure[/]", None: "done"}[result.success]
        if self.bar is not None:
            self.progress.update(self.bar, status=ok + (" (stopped)" if result.interrupted else ""))

    def on_end(self, session, summary):
        self.progress.stop()
