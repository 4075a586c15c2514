"""`vla fleet run` and `vla dashboard`."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import click

from vla.client.queue import MERGE_MODES


def _arm_specs(loaded, arm_ids, all_arms, robot, n_arms, tasks, out: Path, opts) -> list:
    from vla.fleet.arm import ArmSpec

    if sum(bool(x) for x in (arm_ids, all_arms, n_arms)) != 1:
        raise click.UsageError("choose the arms one way: --arm ID (repeatable), --all, or --robot NAME --arms N")
    if n_arms and not robot:
        raise click.UsageError("--arms N needs --robot NAME (e.g. --robot sim --arms 4)")
    if all_arms:
        arm_ids = tuple(loaded.config.arms)
        if not arm_ids:
            raise click.UsageError(f"--all: {loaded.path or 'vla.yaml'} lists no arms (see `vla init`)")
    unknown = [a for a in arm_ids if a not in loaded.config.arms]
    if unknown:
        known = ", ".join(loaded.config.arms) or "none"
        raise click.UsageError(f"--arm {unknown[0]}: no such arm in {loaded.path or 'vla.yaml'} (known: {known})")
    if len(set(arm_ids)) != len(arm_ids):
        raise click.UsageError("--arm: an arm is named twice")
    if arm_ids:
        entries = [(a, a, robot) for a in arm_ids]
    else:
        entries = [(f"{robot}{i + 1:02d}", None, robot) for i in range(n_arms)]
    specs = []
    for i, (label, arm_id, robot_name) in enumerate(entries):
        seed = None if opts["seed"] is None else opts["seed"] + 1000 * i  # each arm its own episodes
        specs.append(ArmSpec(
            label=label, folder=str(out / "arms" / label), tasks=list(tasks), robot=robot_name, arm=arm_id,
            config_path=str(loaded.path) if loaded.path else None, episodes=opts["episodes"], seed=seed,
            episode_s=opts["episode_s"], policy_url=opts["policy_url"], safety=opts["safety"],
            record_dir=str(Path(opts["record_dir"]) / label) if opts["record_dir"] else None, merge=opts["merge"],
            actions_per_chunk=opts["actions_per_chunk"], threshold=opts["threshold"], control_hz=opts["control_hz"],
            jpeg_quality=opts["jpeg_quality"], camera_hz=opts["camera_hz"], camera=opts["camera"],
        ))
    return specs


@click.group()
def fleet():
    """Several arms at once, one process each."""


@fleet.command("run")
@click.option("--arm", "arm_ids", multiple=True, help="Arm id from vla.yaml's arms (repeat for several).")
@click.option("--all", "all_arms", is_flag=True, help="Every arm vla.yaml lists.")
@click.option("--robot", default=None, help="Robot plugin; with --arms N, N arms of it from the lab config (e.g. sim).")
@click.option("--arms", "n_arms", type=click.IntRange(1, 64), default=None, help="How many arms of --robot.")
@click.option("--task", "tasks", multiple=True, required=True, help="The language goal (on the sim a task id); repeat for several.")
@click.option("--episodes", type=click.IntRange(min=1), default=None, help="Episodes per task and arm (default: until stopped).")
@click.option("--for", "duration_s", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop every arm after this many seconds (default: run until the episodes end or Ctrl-C).")
@click.option("--seed", type=int, default=None, help="Seed of arm i's first episode is SEED + 1000 i.")
@click.option("--duration", "episode_s", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Seconds per episode (default: the robot's episode limit).")
@click.option("--policy-url", default=None, help="ws://HOST:PORT of the policy server all arms use (default: the lab config).")
@click.option("--safety", default=None, type=click.Path(dir_okay=False), help="Safety file for every arm (default: each arm's own).")
@click.option("--record", "record_dir", default=None, type=click.Path(file_okay=False), help="Record each arm's episodes under DIR/<arm>.")
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Folder of this fleet run: per-arm logs, status and tick logs (default: LOG_DIR/fleet_<id>).")
@click.option("--restart", "restarts", type=click.IntRange(min=0), default=0, show_default=True,
              help="Start an arm that crashed again, up to this many times.")
@click.option("--dashboard", "dashboard_port", type=click.IntRange(0, 65535), default=None,
              help="Also serve the live dashboard on this port (0: any free one).")
@click.option("--dashboard-host", default=None, help="Address for --dashboard (default: dashboard.host, 127.0.0.1).")
@click.option("--merge", type=click.Choice(MERGE_MODES), default=None)
@click.option("--actions-per-chunk", type=click.IntRange(min=1), default=None)
@click.option("--threshold", type=click.FloatRange(0, 1, min_open=True), default=None)
@click.option("--control-hz", type=click.FloatRange(min=0, min_open=True), default=None, help="Control rate (default: the robot's).")
@click.option("--camera-hz", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="Camera frames per second for the dashboard (0: none); frames the policy asks for come on top.")
@click.option("--camera", default=None, help="Which camera the dashboard shows (default: the robot's first).")
@click.option("--jpeg-quality", type=click.IntRange(1, 100), default=None)
@click.pass_context
def run(ctx, arm_ids, all_arms, robot, n_arms, tasks, duration_s, restarts, out_dir, dashboard_port, dashboard_host,
        **opts):
    """Drive several arms against one policy server, one process per arm.

    Each arm gets its own folder under --out with its log (arm.log), tick log, live status
    and, with --record, its own dataset; each uses its own arm file and safety file. A table
    shows every arm live. Ctrl-C or SIGTERM holds every arm and closes every episode. An arm
    that crashes or loses its camera is reported and the others go on (--restart N starts it
    again). Exits 0 when every arm ended well, 1 when any crashed, 130/143 when stopped.
    """
    from vla.cli.common import lab_config
    from vla.client.cli import wide_console
    from vla.fleet.supervisor import Fleet
    from vla.fleet.table import LiveTable

    loaded = lab_config(ctx)
    run_id = time.strftime("%Y%m%d-%H%M%S")
    out = Path(out_dir) if out_dir else loaded.base_dir / loaded.config.log_dir / f"fleet_{run_id}"
    specs = _arm_specs(loaded, arm_ids, all_arms, robot, n_arms, tasks, out, opts)
    console = wide_console(stderr=True)
    board = None
    if dashboard_port is not None:
        board = _dashboard_thread(loaded, out, dashboard_host, dashboard_port, opts["policy_url"])
        console.print(f"dashboard: {board.url}", highlight=False)
    fleet_ = Fleet(specs, out, restarts=restarts)
    console.print(f"[bold]vla fleet run[/] {len(specs)} arms → {out}", highlight=False)

    def on_signal(signum, _frame):
        # a second Ctrl-C: do not wait for the arms
        fleet_.stop(signal.Signals(signum).name, force=fleet_.stopping is not None and signum == signal.SIGINT)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    table = LiveTable(console, out)
    try:
        with table:
            code = fleet_.run(duration_s=duration_s, on_update=table.update)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if board is not None:
            board.stop()
    wide_console().print(table.render(fleet_))
    for arm in fleet_.arms:
        if arm.outcome in ("crashed", "killed") or arm.cause:
            console.print(f"[red]{arm.spec.label}[/] {arm.outcome}: {arm.cause}  (log {arm.folder / 'arm.log'})",
                          highlight=False, soft_wrap=True)
    console.print(f"summary: {out / 'fleet.json'}", highlight=False)
    sys.exit(code)


def _dashboard_thread(loaded, fleet_dir: Path, host, port, policy_url):
    from vla.fleet.dashboard import Dashboard, DashboardThread
    from vla.service.net import PortInUse

    cfg = loaded.config.dashboard
    try:
        return DashboardThread(Dashboard(fleet_dir, services=_services(loaded, policy_url, ()),
                                         refresh_s=cfg.refresh_s, title=f"{loaded.config.lab}: fleet"),
                               host or cfg.host, port).start()
    except PortInUse as exc:
        raise click.ClickException(str(exc)) from None


def _services(loaded, policy_url, extra):
    from vla.fleet.dashboard import ServiceTarget, http_base, parse_service

    cfg = loaded.config
    targets = [ServiceTarget("policy", http_base(policy_url or cfg.policy_server.resolved_url()))]
    if cfg.dashboard.rewarder:
        targets.append(ServiceTarget("rewarder", http_base(cfg.rewarder.resolved_url())))
    for text in (*cfg.dashboard.services, *extra):
        try:
            targets.append(parse_service(text))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--service") from None
    return targets


def latest_fleet_dir(loaded) -> Path | None:
    root = loaded.base_dir / loaded.config.log_dir
    runs = sorted(root.glob("fleet_*"), key=lambda p: p.stat().st_mtime) if root.is_dir() else []
    return runs[-1] if runs else None


@click.command()
@click.option("--fleet", "fleet_dir", default=None, type=click.Path(file_okay=False, exists=True),
              help="Folder of a fleet run (default: the newest LOG_DIR/fleet_*).")
@click.option("--host", default=None, help="Address to listen on (default: dashboard.host, 127.0.0.1).")
@click.option("--port", default=None, type=click.IntRange(0, 65535), help="Port (default: dashboard.port, 8090).")
@click.option("--policy-url", default=None, help="Policy server whose /healthz and /metrics to show (default: the lab config).")
@click.option("--service", "services", multiple=True, metavar="NAME=URL", help="Another service to watch (repeatable).")
@click.pass_context
def dashboard(ctx, fleet_dir, host, port, policy_url, services):
    """Serve a live web page of a fleet run: per arm queue over time, round trip, underflows per
    minute, clamps and holds, task, episode, successes and the latest camera frame; per service
    health and request rates; the G1 alarm. The same data as JSON at /api/arms (SSE at /api/stream)."""
    import asyncio

    from vla.cli.common import lab_config
    from vla.fleet.dashboard import Dashboard
    from vla.service.http import serve
    from vla.service.net import PortInUse

    loaded = lab_config(ctx)
    cfg = loaded.config.dashboard
    folder = Path(fleet_dir) if fleet_dir else latest_fleet_dir(loaded)
    if folder is None:
        raise click.UsageError(f"no fleet run under {loaded.base_dir / loaded.config.log_dir}; pass --fleet DIR")
    board = Dashboard(folder, services=_services(loaded, policy_url, services), refresh_s=cfg.refresh_s,
                      title=f"{loaded.config.lab}: fleet")

    async def main():
        try:
            served = await serve(board.app(), host or cfg.host, cfg.port if port is None else port)
        except PortInUse as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"dashboard of {folder} on {served.url} (Ctrl-C to stop)")
        try:
            await asyncio.Event().wait()
        finally:
            await served.close()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
