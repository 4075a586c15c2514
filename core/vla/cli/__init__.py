"""The `vla` command. Subcommands are imported only when invoked, so start-up stays fast.

Each entry below maps a command name to where it lives and its one-line help; the help is
written here so that `vla --help` need not import the command's module.
"""

from __future__ import annotations

import sys

import click

from vla import __version__

LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    # name: (import path, one-line help)
    "init": ("vla.cli.init_cmd:init", "Write a starter lab folder: vla.yaml, .env.example, arm and safety files."),
    "config": ("vla.cli.config_cmd:config", "Show the effective configuration and where each value came from."),
    "plugins": ("vla.cli.plugins_cmd:plugins", "List, install and uninstall plugins."),
    "doctor": ("vla.cli.doctor_cmd:doctor", "Check this machine, the lab config and the plugins."),
    "serve": ("vla.serving.cli:serve", "Serve a policy over WebSocket (msgpack, openpi-compatible)."),
    "run": ("vla.client.cli:run", "Drive an arm with a remote policy: async chunks, safety layer, watchdog."),
    "report": ("vla.client.report:report", "Plot a run's tick log (queue, round trip, clamps) to PNG."),
    "eval": ("vla.evaluation.cli:eval_cmd", "Run episodes against a policy and report success@K per task."),
    "serve-rewarder": ("vla.rewarding.cli:serve_rewarder", "Serve a rewarder over HTTP (POST /score)."),
    "rewarder": ("vla.rewarding.cli:rewarder", "Calibrate rewarders against labelled clips and compare them."),
    "train": ("vla.training.cli:train", "Improve a policy with a trainer plugin."),
    "learn": ("vla.learning.cli:learn", "Improve a policy on N arms from a rewarder's scores alone (no demos)."),
    "calibrate": ("vla.calibration.cli:calibrate", "Calibrate an arm's camera from its own kinematics and a marker."),
    "up": ("vla.deploy.cli:up", "Start the GPU host's services with docker compose."),
    "down": ("vla.deploy.cli:down", "Stop and remove the services `vla up` started."),
    "ps": ("vla.deploy.cli:ps", "Show each service's state and health."),
    "logs": ("vla.deploy.cli:logs", "Show a service's logs."),
    "build": ("vla.deploy.cli:build", "Build the runtime and plugin images."),
    "fleet": ("vla.fleet.cli:fleet", "Drive several arms at once, one process each, with a live table."),
    "dashboard": ("vla.fleet.cli:dashboard", "Serve a live web page of a fleet run (JSON and SSE at /api/arms)."),
    "gates": ("vla.lab.cli:gates", "Judge the lab plan's gates G0-G3 and the latency KPI from what was recorded."),
    "board": ("vla.lab.cli:board", "Build the static HTML evaluation board from `vla eval` results over time."),
}


class LazyGroup(click.Group):
    """Lists built-in commands from LAZY_COMMANDS without importing them, plus plugin commands."""

    _plugins_loaded = False

    def _load_plugin_commands(self, ctx: click.Context) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        from vla.plugins import get_registry, raise_errors

        registry = get_registry()
        for impl in registry.plugin_manager.hook.register_commands.get_hookimpls():
            try:
                impl.function(cli=self)
            except Exception as exc:
                if raise_errors():
                    raise
                registry.report(impl.plugin_name, exc)

    def list_commands(self, ctx):
        self._load_plugin_commands(ctx)
        return sorted(set(LAZY_COMMANDS) | set(self.commands))

    def get_command(self, ctx, name):
        if name in LAZY_COMMANDS and name not in self.commands:
            from vla.specs import resolve_import_path

            self.commands[name] = resolve_import_path(LAZY_COMMANDS[name][0])
        if name not in self.commands:
            self._load_plugin_commands(ctx)
        return self.commands.get(name)

    def format_commands(self, ctx, formatter):
        self._load_plugin_commands(ctx)
        rows = []
        for name in self.list_commands(ctx):
            if name in LAZY_COMMANDS and name not in self.commands:
                rows.append((name, LAZY_COMMANDS[name][1]))
            else:
                cmd = self.commands[name]
                rows.append((name, cmd.get_short_help_str(limit=formatter.width)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vla")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar="VLA_CONFIG",
    default=None,
    help="Lab config file (default: $VLA_CONFIG, then ./vla.yaml).",
)
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """vla: run VLA policies on robot arms, score them with VLMs, improve them without demos."""
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path


def main() -> None:
    try:
        cli(prog_name="vla")
    except KeyboardInterrupt:
        sys.exit(130)
