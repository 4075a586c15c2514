"""Helpers shared by CLI commands."""

from __future__ import annotations

import click

from vla.config import ConfigError, LoadedConfig, load_config

EXIT_CONFIG_ERROR = 2


class ConfigUsageError(click.ClickException):
    exit_code = EXIT_CONFIG_ERROR


def lab_config(ctx: click.Context | None = None) -> LoadedConfig:
    """The lab config for this invocation; a bad file exits with code 2 naming the file and key."""
    ctx = ctx or click.get_current_context(silent=True)
    path = None
    if ctx is not None:
        root = ctx.find_root()
        path = (root.obj or {}).get("config_path") if root.obj else None
    try:
        return load_config(path)
    except ConfigError as exc:
        raise ConfigUsageError(f"bad configuration: {exc}") from None
