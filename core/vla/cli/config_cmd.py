"""`vla config show`."""

from __future__ import annotations

import json

import click

from vla.cli.common import lab_config
from vla.config import unstructure


@click.group()
def config() -> None:
    """Show the effective configuration."""


def _flatten(data: dict, prefix: str = "") -> list[tuple[str, object]]:
    rows = []
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in ("arms", "plugins"):
            rows.extend(_flatten(value, dotted + "."))
        else:
            rows.append((dotted, value))
    return rows


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON with values and sources.")
@click.option("--show-secrets", is_flag=True, help="Print API keys instead of masking them.")
@click.pass_context
def show(ctx: click.Context, as_json: bool, show_secrets: bool) -> None:
    """Print every setting, its value and where it came from (default, file, .env or environment)."""
    loaded = lab_config(ctx)
    rows = []
    for key, value in _flatten(unstructure(loaded.config)):
        if key.endswith("api_key") and value and not show_secrets:
            value = "***"
        rows.append({"key": key, "value": value, "source": loaded.sources.get(key, "default")})
    if as_json:
        click.echo(json.dumps({"file": str(loaded.path) if loaded.path else None, "settings": rows}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"vla config ({loaded.path or 'no vla.yaml found: defaults'})")
    for column in ("key", "value", "source"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row["key"], json.dumps(row["value"]), row["source"])
    Console().print(table)
